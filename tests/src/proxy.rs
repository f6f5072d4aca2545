//! A TCP proxy that a test can cut and restore, to play a broker that cannot be reached.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` while up.
    pub async fn start(upstream: SocketAddr, up: bool) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let flag = Arc::new(AtomicBool::new(up));
        let cut = Arc::new(Notify::new());
        let (f, c) = (flag.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !f.load(Ordering::SeqCst) {
                    drop(inbound); // refused: the broker "is down"
                    continue;
                }
                let (c, f) = (c.clone(), f.clone());
                tokio::spawn(async move {
                    // Registered before the flag is read again: a cut between the accept
                    // and here (a process connecting just as the test cuts) is seen by one
                    // or the other.
                    let cut = c.notified();
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    if !f.load(Ordering::SeqCst) {
                        return;
                    }
                    // The cut first: select! otherwise polls its branches in random
                    // order, and a copy polled first forwards what a client wrote after
                    // the cut.
                    tokio::select! {
                        biased;
                        _ = cut => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            up: flag,
            cut,
        })
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            self.cut.notify_waiters();
        }
    }
}
