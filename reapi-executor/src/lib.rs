//! The worker side of the REAPI service: executors that materialise an
//! action's inputs from the CAS, run it in a sandbox and upload its outputs.
//! No executor is offered yet.
