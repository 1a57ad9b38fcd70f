//! The scheduling side of the REAPI service: the Execution and Operations
//! services, the action queue, and matching actions to executors by their
//! platform properties. Execution is not served yet.
