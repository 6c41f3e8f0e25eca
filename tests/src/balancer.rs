//! A small TCP load balancer for the cluster tests: round-robin over the backends, skipping
//! one that refuses the connection (a killed server), as haproxy does with a failed check.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Balancer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Balancer {
    /// Listens on a free loopback port and spreads connections over `backends`.
    pub async fn start(backends: Vec<SocketAddr>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let next = Arc::new(AtomicUsize::new(0));
        let backends = Arc::new(backends);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (next, backends) = (next.clone(), backends.clone());
                tokio::spawn(async move {
                    for _ in 0..backends.len() {
                        let i = next.fetch_add(1, Ordering::Relaxed) % backends.len();
                        if let Ok(mut server) = TcpStream::connect(backends[i]).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { addr, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://…/ws/{doc}` through the balancer.
    pub fn ws_url(&self, doc: &str) -> String {
        format!("ws://{}/ws/{doc}", self.addr)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
