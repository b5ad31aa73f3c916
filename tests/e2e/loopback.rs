//! A listener on 127.0.0.1 with its accept thread and the threads its connections run on: the
//! test servers (the fault proxy, the scripted backend) differ only in what a connection gets.
//! Connections from outside loopback are closed unanswered; dropping the listener stops the
//! accept loop and joins every thread, so nothing outlives the test.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The stop flag that a connection's threads poll, and those threads.
#[derive(Default)]
pub struct Threads {
    stop: AtomicBool,
    running: Mutex<Vec<JoinHandle<()>>>,
}

impl Threads {
    /// Whether the listener is being dropped: a connection's loop ends when this turns true.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Runs `work` on a thread that the listener joins when dropped; finished threads are
    /// forgotten here, so the list stays as long as the connections that are open.
    pub fn spawn(&self, work: impl FnOnce() + Send + 'static) {
        let mut running = self.running.lock().unwrap();
        running.retain(|t| !t.is_finished());
        running.push(std::thread::spawn(work));
    }
}

pub struct Listener {
    addr: SocketAddr,
    threads: Arc<Threads>,
    acceptor: Option<JoinHandle<()>>,
}

impl Listener {
    /// Binds 127.0.0.1:0 and hands each loopback connection to `on_accept` on the accept thread
    /// (which starts its threads through `threads`).
    pub fn start(
        threads: Arc<Threads>,
        mut on_accept: impl FnMut(TcpStream) + Send + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let t = threads.clone();
        let acceptor = std::thread::spawn(move || {
            while !t.stopping() {
                match listener.accept() {
                    Ok((conn, peer)) if peer.ip().is_loopback() => on_accept(conn),
                    Ok((conn, _)) => {
                        let _ = conn.shutdown(Shutdown::Both);
                    }
                    // WouldBlock: nothing to accept yet.
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            addr,
            threads,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.threads.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let running = std::mem::take(&mut *self.threads.running.lock().unwrap());
        for t in running {
            let _ = t.join();
        }
    }
}
