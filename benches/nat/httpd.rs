//! A tiny HTTP/1.x server for the connection-rate benchmark (benches/nat.sh):
//! every request gets the same 13-byte body and `Connection: close`, so each
//! request is a new TCP connection. THREADS threads share one listener
//! (blocking accept), so the client and the path under test, not this
//! server, are the limit. Prints `listening` when ready.
//!
//! Usage: httpd ADDR:PORT [THREADS]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::Arc;
use std::thread;

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhello, world\n";

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().expect("usage: httpd ADDR:PORT [THREADS]");
    let threads: usize = args.next().map_or(2, |t| t.parse().expect("THREADS is a number"));
    let listener = Arc::new(TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")));
    println!("listening");
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let l = listener.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    let Ok((mut s, _)) = l.accept() else { continue };
                    let _ = s.set_nodelay(true);
                    // Read until the end of the request head (or the client gives up).
                    let mut seen = 0usize;
                    let mut tail = [0u8; 4];
                    let mut complete = false;
                    while !complete {
                        let n = match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        for &b in &buf[..n] {
                            tail = [tail[1], tail[2], tail[3], b];
                            if &tail == b"\r\n\r\n" {
                                complete = true;
                            }
                        }
                        seen += n;
                        if seen > 64 * 1024 {
                            break;
                        }
                    }
                    if complete {
                        let _ = s.write_all(RESPONSE);
                    }
                    let _ = s.shutdown(Shutdown::Write);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}
