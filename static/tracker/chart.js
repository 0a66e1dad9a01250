/*
 * Behaviour for the server-rendered growth chart (tracker/web/charts.py draws it; the chart is
 * complete without this file, which is what the PDF report gets).
 *
 * For every svg.growth-chart[data-interactive="true"] on the page:
 * - a legend item (g.legend-item[data-series]) toggles its series, that series' uncertainty band
 *   and its nadir ring on click, Enter or Space, and says so in aria-pressed;
 * - hovering or focusing a point (.point) shows a tooltip with its data-series, data-date and
 *   data-value; Escape, leaving or blurring the point hides it.
 *
 * Plain ES2017, no libraries, no inline handlers; a page without a chart is left alone.
 * Charts added to the page later can be set up with window.TrackerCharts.init(element).
 */
(function () {
  'use strict';

  const TOGGLED = '.series, .band, .marker-nadir';
  const hiders = []; // one per chart, for Escape pressed anywhere

  function createTooltip() {
    const tip = document.createElement('div');
    tip.className = 'growth-chart-tooltip';
    tip.setAttribute('role', 'tooltip');
    tip.hidden = true;
    Object.assign(tip.style, {
      position: 'absolute',
      zIndex: '1000',
      pointerEvents: 'none',
      background: '#ffffff',
      color: '#222222',
      border: '1px solid #8c8c8c',
      borderRadius: '3px',
      boxShadow: '0 1px 3px rgba(0, 0, 0, 0.2)',
      padding: '4px 6px',
      font: '12px/1.35 sans-serif',
      whiteSpace: 'nowrap',
    });
    document.body.appendChild(tip);
    return tip;
  }

  function line(text, bold) {
    const element = document.createElement(bold ? 'strong' : 'div');
    element.textContent = text; // never HTML: the values come from the page
    if (bold) element.style.display = 'block';
    return element;
  }

  function setUp(svg) {
    if (svg.getAttribute('data-interactive') !== 'true' || svg.hasAttribute('data-chart-ready')) {
      return;
    }
    svg.setAttribute('data-chart-ready', '');
    const tip = createTooltip();
    let shown = null; // the point the tooltip is for

    function hide() {
      tip.hidden = true;
      shown = null;
    }
    hiders.push(hide);

    function show(point) {
      tip.textContent = '';
      tip.appendChild(line(point.getAttribute('data-series') || '', true));
      tip.appendChild(line(point.getAttribute('data-date') || '', false));
      tip.appendChild(line(point.getAttribute('data-value') || '', false));
      tip.hidden = false;
      shown = point;
      const box = point.getBoundingClientRect();
      const gap = 8;
      let left = box.right + gap;
      let top = box.top - tip.offsetHeight - gap;
      if (left + tip.offsetWidth > document.documentElement.clientWidth - 4) {
        left = box.left - tip.offsetWidth - gap;
      }
      if (top < 4) top = box.bottom + gap;
      tip.style.left = `${Math.max(4, left) + window.scrollX}px`;
      tip.style.top = `${top + window.scrollY}px`;
    }

    function pointOf(target) {
      const point = target instanceof Element ? target.closest('.point') : null;
      return point && svg.contains(point) ? point : null;
    }

    function toggle(item) {
      const series = item.getAttribute('data-series');
      const visible = item.getAttribute('aria-pressed') === 'false';
      item.setAttribute('aria-pressed', String(visible));
      item.style.opacity = visible ? '' : '0.45';
      const label = item.querySelector('text');
      if (label) label.style.textDecoration = visible ? '' : 'line-through';
      svg.querySelectorAll(TOGGLED).forEach((element) => {
        if (element.getAttribute('data-series') === series) {
          element.style.display = visible ? '' : 'none';
        }
      });
      if (!visible && shown && shown.getAttribute('data-series') === series) hide();
    }

    function legendItemOf(target) {
      const item = target instanceof Element ? target.closest('.legend-item') : null;
      return item && svg.contains(item) && item.hasAttribute('aria-pressed') ? item : null;
    }

    svg.addEventListener('mouseover', (event) => {
      const point = pointOf(event.target);
      if (point) show(point);
    });
    svg.addEventListener('mouseout', (event) => {
      const point = pointOf(event.target);
      if (!point || point.contains(event.relatedTarget)) return;
      const focused = pointOf(document.activeElement);
      if (focused) show(focused);
      else hide();
    });
    svg.addEventListener('focusin', (event) => {
      const point = pointOf(event.target);
      if (point) show(point);
    });
    svg.addEventListener('focusout', (event) => {
      if (pointOf(event.target)) hide();
    });
    svg.addEventListener('click', (event) => {
      const item = legendItemOf(event.target);
      if (item) toggle(item);
    });
    svg.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        hide();
        return;
      }
      if (event.key !== 'Enter' && event.key !== ' ') return;
      const item = legendItemOf(event.target);
      if (item) {
        event.preventDefault(); // Space would scroll the page
        toggle(item);
      }
    });
  }

  function init(root) {
    const scope = root || document;
    if (scope instanceof Element && scope.matches('svg.growth-chart')) setUp(scope);
    scope.querySelectorAll('svg.growth-chart').forEach(setUp);
  }

  // Escape dismisses a tooltip opened by hovering, wherever the keyboard focus is.
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') hiders.forEach((hide) => hide());
  });

  window.TrackerCharts = { init };
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', () => init(document));
  } else {
    init(document);
  }
})();
