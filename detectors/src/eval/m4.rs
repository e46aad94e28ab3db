//! M4 forecast accuracy: sMAPE, MASE, OWA and the Naive2 benchmark.
