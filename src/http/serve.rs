//! The HTTP/1.1 accept loop, with the bounds a client cannot push past: at most
//! `max_connections` connections are served at once (the next is accepted only when one
//! closes, so descriptors for the WAL, flushes and file reads stay free), and a client must
//! send a request's headers within `http.header_timeout` of the server starting to wait
//! for them (so a kept-alive connection idles at most that long, and a header dribbled a
//! byte at a time is cut off). Body reads are bounded in `body.rs`.
//!
//! Descriptors: at start-up the soft `RLIMIT_NOFILE` is raised to the hard limit, a reserve
//! is kept for everything but connections, and the connection limit must fit in the rest.
//!
//! HTTPS (`http.tls_cert`, `http.tls_key`): every connection is a TLS one (rustls), whose
//! handshake must end within `http.header_timeout` too.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// Descriptors kept for everything but client connections: WAL segments, flushes, Parquet
/// reads of queries and compaction, the listener, logs. Plus two per ingest shard.
pub const FD_RESERVE_BASE: u64 = 256;

/// The most connections served at once when the config does not say.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 4096;

/// Raises the soft descriptor limit to the hard one; returns the soft limit in force.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(raised.rlim_cur);
        }
        warn!(
            soft = lim.rlim_cur,
            hard = lim.rlim_max,
            "could not raise the descriptor limit"
        );
    }
    Ok(lim.rlim_cur)
}

/// The connection limit: the configured one if the descriptors allow it (else an error
/// naming the key), or as many as the descriptors allow up to [`DEFAULT_MAX_CONNECTIONS`].
pub fn connection_limit(
    configured: Option<usize>,
    fd_limit: u64,
    shards: usize,
) -> Result<usize, String> {
    let reserve = FD_RESERVE_BASE + 2 * shards as u64;
    let room = fd_limit.saturating_sub(reserve);
    match configured {
        Some(n) if n as u64 > room => Err(format!(
            "http.max_connections = {n} does not fit the descriptor limit: {fd_limit} descriptors, {reserve} kept for the WAL, flushes and file reads; lower it or raise `ulimit -n`"
        )),
        Some(n) => Ok(n),
        None if room < 16 => Err(format!(
            "the descriptor limit ({fd_limit}) leaves fewer than 16 connections after the {reserve} kept for the WAL, flushes and file reads; raise `ulimit -n`"
        )),
        None => Ok(room.min(DEFAULT_MAX_CONNECTIONS) as usize),
    }
}

/// How connections are served.
#[derive(Clone)]
pub struct ServeLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// HTTPS only, with this certificate.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// The TLS side of the server: the certificate chain and private key (PEM files).
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("http.tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "http.tls_cert {}: no certificate in it",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("http.tls_key {}: {e}", key.display()))?;
    // ring: the provider async-nats (NATS TLS) and reqwest (node-to-node HTTPS) use here
    // too, so one crypto library serves all three (rustls marks it deprecated for lacking
    // post-quantum key exchange; aws-lc-rs would add a C build).
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("http.tls_cert/tls_key: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish
/// (at most `drain` long) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(256);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was taken: wait a
                    // little rather than spin, and go on.
                    warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let Some(tls) = limits.tls.clone() else {
            let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    debug!("connection ended: {e}");
                }
                drop(permit);
            });
            continue;
        };
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let handshake_within = limits.header_timeout;
        tokio::spawn(async move {
            match tokio::time::timeout(handshake_within, tls.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn).await {
                        debug!("connection ended: {e}");
                    }
                }
                Ok(Err(e)) => debug!("TLS handshake failed: {e}"),
                Err(_) => debug!("TLS handshake not done within http.header_timeout"),
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            "requests still open {} s after the shutdown signal; stopping anyway",
            drain.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limits_fit_the_descriptors() {
        assert_eq!(connection_limit(None, 1024, 8), Ok(1024 - 256 - 16));
        assert_eq!(
            connection_limit(None, 1 << 20, 8),
            Ok(DEFAULT_MAX_CONNECTIONS as usize)
        );
        assert_eq!(connection_limit(Some(100), 1024, 8), Ok(100));
        let e = connection_limit(Some(2000), 1024, 8).unwrap_err();
        assert!(e.contains("http.max_connections"), "{e}");
        assert!(connection_limit(None, 200, 8).is_err());
    }
}
