//! Forecasters (ETS, MSTL, seasonal naive) with prediction intervals, shared by the forecast band and capacity detectors and by the M4 benchmark.
