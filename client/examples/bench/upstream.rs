//! The upstream every column reaches: nginx, with an in-process WebSocket
//! echo and upload sink behind it.

use std::{
    io::Write,
    net::{SocketAddr, TcpListener},
    path::Path,
    process::Command,
};

use futures_util::StreamExt;

use crate::{
    procs::{free_port, spawn, wait_port, write, Proc},
    Res, BIG, LONG_LINK_FILE,
};

pub struct Nginx {
    pub addr: SocketAddr,
    _proc: Proc,
}

impl Nginx {
    pub fn start(nginx: &Path, work: &Path, echo: SocketAddr) -> Res<Nginx> {
        let dir = std::fs::canonicalize(work)
            .map_err(|e| e.to_string())?
            .join("nginx");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for size in [BIG, LONG_LINK_FILE] {
            file(&dir, size)?;
        }
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let d = dir.display();
        let conf = dir.join("nginx.conf");
        write(&conf, &format!(
            "worker_processes 1;\nmaster_process off;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 20000; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               keepalive_requests 10000000;\n  client_max_body_size 0;\n\
               server {{\n    listen {addr};\n    root {d};\n\
                 location = /small {{ default_type text/plain; return 200 \"Hello, world\\n\"; }}\n\
                 location = /upload {{ client_body_buffer_size 1m; proxy_request_buffering off; proxy_pass http://{echo}/upload; }}\n\
                 location = /ws {{ proxy_pass http://{echo}/ws; proxy_http_version 1.1;\n\
                   proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\"; }}\n\
               }}\n}}\n"
        ))?;
        let proc = spawn(Command::new(nginx).arg("-c").arg(&conf).arg("-p").arg(&dir))?;
        wait_port(addr)?;
        Ok(Nginx { addr, _proc: proc })
    }
}

/// `N m.bin` of `size` bytes (N MiB): one 1 MiB block repeated, made
/// unless it is there.
fn file(dir: &Path, size: u64) -> Res<()> {
    let path = dir.join(format!("{}m.bin", size >> 20));
    if std::fs::metadata(&path).map(|m| m.len()).ok() == Some(size) {
        return Ok(());
    }
    let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    for _ in 0..size >> 20 {
        f.write_all(&chunk).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A WebSocket echo and an upload sink, on their own thread.
pub fn start_echo_server() -> SocketAddr {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            async fn echo(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
                let (resp, mut session, mut stream) = actix_ws::handle(&req, body)?;
                actix_rt::spawn(async move {
                    while let Some(Ok(msg)) = stream.next().await {
                        let ok = match msg {
                            actix_ws::Message::Text(t) => session.text(t).await,
                            actix_ws::Message::Binary(b) => session.binary(b).await,
                            actix_ws::Message::Close(_) => break,
                            _ => Ok(()),
                        };
                        if ok.is_err() {
                            break;
                        }
                    }
                });
                Ok(resp)
            }
            async fn upload(mut body: web::Payload) -> HttpResponse {
                let mut n = 0u64;
                while let Some(Ok(chunk)) = body.next().await {
                    n += chunk.len() as u64;
                }
                HttpResponse::Ok().body(n.to_string())
            }
            let server = HttpServer::new(|| {
                App::new()
                    .route("/ws", web::get().to(echo))
                    .route("/upload", web::post().to(upload))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .expect("echo listen")
            .run();
            let _ = server.await;
        });
    });
    addr
}
