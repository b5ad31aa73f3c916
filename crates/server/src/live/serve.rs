//! The accept loop: each connection goes to hyper, or — when its first bytes are
//! `GET /api/v1/stream` — to the hand-written stream writer in `stream_conn`. Both run the
//! same axum router, so authentication, errors and the handlers are the same either way.
//!
//! This replaces `axum::serve`, which hands every connection to hyper (see `stream_conn` for
//! why streams do not go there). Shutdown works as it did: stop accepting, tell open streams
//! and long polls to end (the `stop` channel), let hyper finish requests in flight, and return
//! once every connection is closed.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::stream_conn::{self, Sniff};

/// Serves `app` on `listener` until `shutdown` resolves, then ends streams through `stop` and
/// waits for every connection to close.
pub async fn run(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
    stop: watch::Sender<bool>,
) {
    // Every connection task holds a receiver; `closed()` resolves when the last one is gone.
    let (close_tx, close_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (app, stopping, close_rx) = (app.clone(), stop.subscribe(), close_rx.clone());
        tokio::spawn(async move {
            connection(tcp, app, stopping).await;
            drop(close_rx);
        });
    }
    tracing::info!("shutting down");
    drop(listener);
    // Ends open streams and long polls so that their connections can close.
    let _ = stop.send(true);
    drop(close_rx);
    close_tx.closed().await;
}

async fn connection(tcp: TcpStream, app: Router, mut stopping: watch::Receiver<bool>) {
    let kind = tokio::select! {
        kind = stream_conn::sniff(&tcp) => kind,
        _ = stopping.wait_for(|s| *s) => return,
    };
    match kind {
        Sniff::Stream => stream_conn::serve(tcp, app, stopping).await,
        Sniff::Other => serve_with_hyper(tcp, app, stopping).await,
        Sniff::Closed => {}
    }
}

async fn serve_with_hyper(tcp: TcpStream, app: Router, mut stopping: watch::Receiver<bool>) {
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app));
    let mut conn = pin!(conn);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stopping.wait_for(|s| *s), if !shutting_down => {
                // Finishes the request in flight, then closes; an idle keep-alive connection
                // closes at once.
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// As `axum::serve` does: errors that belong to one connection are skipped; others (out of
/// file descriptors, say) are logged and the loop pauses so it does not spin.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
