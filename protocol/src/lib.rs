//! Wire types shared by the omoi worker and coordinator. Data only: no runtime, no I/O.

pub mod api;
pub mod artifact;
pub mod context;
pub mod env;
pub mod eval;
pub mod event;
pub mod phase;
pub mod schema;
pub mod standby;
pub mod task;
