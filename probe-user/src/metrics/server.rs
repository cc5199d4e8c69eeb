//! The `/metrics` endpoint: a small HTTP/1.1 server on the session's own
//! runtime. One request per connection (`Connection: close`); a request
//! head over 8 KiB, or not complete within 5 s, is dropped. `GET
//! /metrics` gets the exposition; other paths 404, other methods 405.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::{encode, state::MetricsState};

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` (before the session loads anything, so a port in use fails
/// first).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Answers scrapes until the runtime ends.
pub async fn serve(listener: TcpListener, state: Arc<Mutex<MetricsState>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: wait, and go on accepting.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(READ_TIMEOUT, answer(stream, &state)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, state: &Arc<Mutex<MetricsState>>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    stream.write_all(&response(&head, state)).await?;
    stream.shutdown().await
}

/// The whole response to a request head.
pub fn response(head: &[u8], state: &Arc<Mutex<MetricsState>>) -> Vec<u8> {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut words = line.split(|b| *b == b' ');
    let (method, target) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let path = target.split(|b| *b == b'?').next().unwrap_or_default();
    let (status, kind, body) = match (method, path) {
        (b"GET", b"/metrics") => ("200 OK", encode::CONTENT_TYPE, encode::text(state)),
        (b"GET", _) => (
            "404 Not Found",
            "text/plain",
            "modscope serves /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n".to_owned(),
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Arc<Mutex<MetricsState>> {
        let mut s = MetricsState::default();
        for r in crate::trace::samples::all() {
            s.apply(&r);
        }
        Arc::new(Mutex::new(s))
    }

    #[test]
    fn get_metrics_and_nothing_else() {
        let s = shared();
        let ok =
            String::from_utf8(response(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &s)).unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: application/openmetrics-text; version=1.0.0"));
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.ends_with("# EOF\n"));
        assert!(
            String::from_utf8(response(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n", &s))
                .unwrap()
                .starts_with("HTTP/1.1 200")
        );
        assert!(
            String::from_utf8(response(b"GET / HTTP/1.1\r\n\r\n", &s))
                .unwrap()
                .starts_with("HTTP/1.1 404")
        );
        assert!(
            String::from_utf8(response(b"POST /metrics HTTP/1.1\r\n\r\n", &s))
                .unwrap()
                .starts_with("HTTP/1.1 405")
        );
        assert!(
            String::from_utf8(response(b"\xff\xfe", &s))
                .unwrap()
                .starts_with("HTTP/1.1 405")
        );
    }

    #[test]
    fn a_real_connection_is_answered_and_an_endless_head_is_dropped() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(serve(listener, shared()));
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
                .await
                .unwrap();
            let mut got = String::new();
            c.read_to_string(&mut got).await.unwrap();
            assert!(
                got.contains("modscope_module_calls_total{module=\"m\",function=\"kstrdup\"} 1000"),
                "{got}"
            );
            let mut flood = TcpStream::connect(addr).await.unwrap();
            let _ = flood.write_all(&[b'a'; MAX_HEAD + 10]).await;
            let mut rest = Vec::new();
            let n = flood.read_to_end(&mut rest).await.unwrap_or(0);
            assert_eq!(n, 0, "no answer to a head past 8 KiB");
        });
    }
}
