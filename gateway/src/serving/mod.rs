//! What serving the stack at a network edge needs beyond hyper's defaults: a timer that
//! reuses one sleep per connection, a connection future that polls itself again in place
//! after a self-wake, and an extension map a connection's requests reuse. The gateway's
//! server uses all three; they are public for servers of your own (the benchmark's bare
//! proxy uses the first two), but the layers need none.

mod repoll;
mod spare;
mod timer;

pub use self::repoll::RepollSelfWakes;
pub use self::spare::SpareExtensions;
pub use self::timer::ConnectionTimer;
