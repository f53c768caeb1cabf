//! A webhook receiver that checks both signatures before it trusts a delivery, with nothing
//! but the standard library and this crate.
//!
//! ```sh
//! SMILE_WEBHOOK_SECRET='a little secret' cargo run -p smile-signature --example receiver
//! # then subscribe http://127.0.0.1:9000/hook with that secret
//! ```

use smile_signature::{DEFAULT_TOLERANCE_SECS, smile_verify, standard_verify};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bodies larger than this are refused unread.
const MAX_BODY: usize = 1024 * 1024;

fn main() -> std::io::Result<()> {
    let secret = std::env::var("SMILE_WEBHOOK_SECRET").unwrap_or_else(|_| "a little secret".to_owned());
    let listener = TcpListener::bind("127.0.0.1:9000")?;
    println!("listening on http://127.0.0.1:9000/hook");
    for stream in listener.incoming() {
        if let Err(error) = handle(stream?, secret.as_bytes()) {
            eprintln!("bad request: {error}");
        }
    }
    Ok(())
}

/// Reads one request, verifies it, and answers 200 (accepted) or 401 (not signed by us).
fn handle(mut stream: TcpStream, secret: &[u8]) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?; // the request line
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    if length > MAX_BODY {
        return stream.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n");
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;

    let header = |name: &str| headers.get(name).map(String::as_str).unwrap_or_default();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    // Either scheme is enough; both are checked here to show them.
    let smile = smile_verify(secret, &body, header("smile-signature"));
    let standard = standard_verify(
        secret,
        header("webhook-id"),
        header("webhook-timestamp"),
        &body,
        header("webhook-signature"),
        now,
        DEFAULT_TOLERANCE_SECS,
    );
    let status = match (smile, standard) {
        (Ok(()), Ok(())) => {
            // De-duplicate on webhook-id: deliveries are at least once.
            println!("{} {}", header("webhook-id"), String::from_utf8_lossy(&body));
            "200 OK"
        }
        (smile, standard) => {
            eprintln!("refused: Smile-Signature {smile:?}, webhook-signature {standard:?}");
            "401 Unauthorized"
        }
    };
    stream.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
}
