//! The Rust hyper peer: "Hello World!" on every path, as the posts' hyper
//! server: a fixed number of tokio worker threads, HTTP/1 pipeline flushing on,
//! a header read timeout.
use std::convert::Infallible;
use std::env;
use std::net::SocketAddr;
use std::process::exit;
use std::time::Duration;

use hyper::service::{make_service_fn, service_fn};
use hyper::{Body, Request, Response, Server};

async fn hello(_req: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::builder()
        .header("Server", "hyper")
        .header("Content-Type", "text/plain")
        .body(Body::from("Hello World!"))
        .unwrap())
}

fn usage(msg: &str) -> ! {
    eprintln!("peer-hyper: {}\nusage: peer-hyper --addr HOST:PORT --workers N", msg);
    exit(2)
}

fn main() {
    let args: Vec<String> = env::args().collect();
    let mut addr: Option<SocketAddr> = None;
    let mut workers: usize = 0;
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1).unwrap_or_else(|| usage("missing value"));
        match args[i].as_str() {
            "--addr" => addr = Some(value.parse().unwrap_or_else(|_| usage("bad --addr"))),
            "--workers" => workers = value.parse().unwrap_or_else(|_| usage("bad --workers")),
            other => usage(&format!("unknown option {}", other)),
        }
        i += 2;
    }
    let addr = addr.unwrap_or_else(|| usage("--addr is required"));
    if workers == 0 {
        usage("--workers N (N > 0) is required");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let make_service =
            make_service_fn(|_conn| async { Ok::<_, Infallible>(service_fn(hello)) });
        let builder = Server::try_bind(&addr).unwrap_or_else(|e| {
            eprintln!("peer-hyper: cannot bind {}: {}", addr, e);
            exit(1)
        });
        let server = builder
            .http1_only(true)
            .http1_pipeline_flush(true)
            .http1_header_read_timeout(Duration::from_secs(60))
            .serve(make_service);
        println!("peer-hyper listening on {} with {} worker threads", addr, workers);
        if let Err(e) = server.await {
            eprintln!("peer-hyper: {}", e);
            exit(1);
        }
    });
}
