"""Everything that writes: patients, visits, uploads, analysis runs, assessments, exports."""
