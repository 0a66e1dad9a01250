"""Response assessment: the RANO 2.0 engine (``rano``), the timeline it reads, built from
measurements (``timeline``), and growth analytics (``growth``)."""
