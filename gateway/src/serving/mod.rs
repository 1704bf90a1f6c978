//! What serving the stack at a network edge needs beyond hyper's defaults: a timer that
//! reuses one sleep per connection, and a connection future that polls itself again in
//! place after a self-wake. The gateway's server uses both; they are public for servers of
//! your own (the benchmark's bare proxy uses them too), but the layers need neither.

mod repoll;
mod timer;

pub use self::repoll::RepollSelfWakes;
pub use self::timer::ConnectionTimer;
