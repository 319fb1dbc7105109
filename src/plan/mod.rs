//! Planning: facts + selection + settings → the ordered steps `up` will run.

pub mod step;
