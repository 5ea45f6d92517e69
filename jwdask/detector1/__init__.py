"""Stage 1 (``calwebb_detector1``): one module per step, each a graph-only function
``step(ds, refs, **params) -> Dataset`` on the exposure Dataset
(``sci``/``groupdq`` ``(integration, group, y, x)``, ``pixeldq`` ``(y, x)``)."""
