//! Seasonal baseline: MSTL decomposition, anomalies on the residual.
