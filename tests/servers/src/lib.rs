//! Real servers for tests: nginx, php-fpm and BIND's named, each started as a child
//! process on free loopback ports with its configuration under a test's own directory,
//! and stopped when dropped; and private PostgreSQL, MariaDB and RabbitMQ servers that a
//! harness may crash and restart ([`daemons`]).

pub mod daemons;
pub mod named;
pub mod web;

/// A TCP port free on 127.0.0.1 at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
