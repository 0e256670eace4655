//! Backend servers for the backend test suites: PostgreSQL, Redis and etcd on
//! loopback, on free ports, in a private directory.
//!
//! `cargo xtask test` starts them in a temporary directory and stops them when
//! it is done, also on failure. `cargo xtask services up` starts them in
//! `target/xtask-services/` and leaves them running for hand-run tests;
//! `services down` stops them and `services status` shows them.
//!
//! A missing server binary is installed from its Debian package when xtask
//! runs as root with apt-get available; otherwise xtask fails with the exact
//! command to run.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::{Cmd, Error, find_program, has_program};

/// A backend server kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    Redis,
    Etcd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Redis => "redis",
            Kind::Etcd => "etcd",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Kind::Postgres, Kind::Redis, Kind::Etcd]
            .into_iter()
            .find(|k| k.name() == s)
    }

    fn env_var(self) -> &'static str {
        match self {
            Kind::Postgres => "FOUNDATION_POSTGRES_URL",
            Kind::Redis => "FOUNDATION_REDIS_URL",
            Kind::Etcd => "FOUNDATION_ETCD_ENDPOINTS",
        }
    }

    fn debian_package(self) -> &'static str {
        match self {
            Kind::Postgres => "postgresql",
            Kind::Redis => "redis-server",
            Kind::Etcd => "etcd-server",
        }
    }

    fn url(self, port: u16) -> String {
        match self {
            Kind::Postgres => format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            Kind::Redis => format!("redis://127.0.0.1:{port}/"),
            Kind::Etcd => format!("http://127.0.0.1:{port}"),
        }
    }
}

/// One started server.
#[derive(Debug)]
struct Service {
    kind: Kind,
    port: u16,
    dir: PathBuf,
    /// The process when it is our child (etcd under `xtask test`).
    child: Option<Child>,
}

/// The servers of one `test` run or one `services up`.
#[derive(Debug)]
pub(crate) struct Running {
    dir: PathBuf,
    services: Vec<Service>,
    /// Stop the servers and remove `dir` on drop (`xtask test`), or leave
    /// them running (`services up`).
    stop_on_drop: bool,
}

impl Running {
    /// Starts the servers the backend suites need in a fresh temporary
    /// directory; they stop when the value is dropped.
    pub(crate) fn start_for_tests(root: &Path) -> Result<Self, Error> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("foundation-xtask-{}-{nanos}", std::process::id()));
        let mut running = Running {
            dir,
            services: Vec::new(),
            stop_on_drop: true,
        };
        running.start_all(&needed_kinds(root))?;
        Ok(running)
    }

    /// The environment variables that point the tests at the servers.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        self.services
            .iter()
            .map(|s| (s.kind.env_var().to_owned(), s.kind.url(s.port)))
            .collect()
    }

    fn start_all(&mut self, kinds: &[Kind]) -> Result<(), Error> {
        fs::create_dir_all(&self.dir)?;
        for &kind in kinds {
            let service = start(kind, &self.dir)?;
            println!(
                "    started {} on 127.0.0.1:{} ({})",
                kind.name(),
                service.port,
                service.dir.display()
            );
            self.services.push(service);
        }
        Ok(())
    }

    fn stop_all(&mut self) {
        for service in self.services.drain(..).rev() {
            if let Err(e) = stop(service) {
                eprintln!("xtask: warning: {e}");
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.stop_on_drop {
            self.stop_all();
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// PostgreSQL and Redis always; etcd once a crate uses `etcd-client`.
fn needed_kinds(root: &Path) -> Vec<Kind> {
    let mut kinds = vec![Kind::Postgres, Kind::Redis];
    let lock = fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    if lock.contains("name = \"etcd-client\"") {
        kinds.push(Kind::Etcd);
    }
    kinds
}

/// `cargo xtask services up|down|status`.
pub(crate) fn command(root: &Path, sub: Option<&str>) -> Result<(), Error> {
    let state_dir = root.join("target").join("xtask-services");
    let state_file = state_dir.join("state");
    match sub {
        Some("up") => {
            if state_file.exists() {
                println!("services are already up:");
                return status(&state_file);
            }
            let mut running = Running {
                dir: state_dir.clone(),
                services: Vec::new(),
                stop_on_drop: true,
            };
            running.start_all(&needed_kinds(root))?;
            let mut state = String::new();
            let mut env = String::new();
            for s in &running.services {
                state.push_str(&format!("{} {}\n", s.kind.name(), s.port));
                env.push_str(&format!(
                    "export {}={}\n",
                    s.kind.env_var(),
                    s.kind.url(s.port)
                ));
            }
            fs::write(&state_file, state)?;
            fs::write(state_dir.join("env"), &env)?;
            // From here on the servers outlive this process.
            running.stop_on_drop = false;
            for s in &mut running.services {
                // Detach: the child keeps running after xtask exits.
                s.child = None;
            }
            println!("\n{env}");
            println!("(also in {}; `source` it)", state_dir.join("env").display());
            Ok(())
        }
        Some("down") => {
            let Ok(state) = fs::read_to_string(&state_file) else {
                println!("no services are up");
                return Ok(());
            };
            for (kind, port) in parse_state(&state) {
                let service = Service {
                    kind,
                    port,
                    dir: state_dir.join(kind.name()),
                    child: None,
                };
                match stop(service) {
                    Ok(()) => println!("stopped {} on port {port}", kind.name()),
                    Err(e) => eprintln!("xtask: warning: {e}"),
                }
            }
            fs::remove_dir_all(&state_dir)?;
            Ok(())
        }
        Some("status") => {
            if state_file.exists() {
                status(&state_file)
            } else {
                println!("no services are up (`cargo xtask services up` starts them)");
                Ok(())
            }
        }
        _ => Err(Error::msg("usage: cargo xtask services up|down|status")),
    }
}

fn parse_state(state: &str) -> Vec<(Kind, u16)> {
    state
        .lines()
        .filter_map(|l| {
            let (k, p) = l.split_once(' ')?;
            Some((Kind::parse(k)?, p.trim().parse().ok()?))
        })
        .collect()
}

fn status(state_file: &Path) -> Result<(), Error> {
    let state = fs::read_to_string(state_file)?;
    for (kind, port) in parse_state(&state) {
        let up = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(500),
        )
        .is_ok();
        println!(
            "{:<9} {}={:<45} {}",
            kind.name(),
            kind.env_var(),
            kind.url(port),
            if up { "up" } else { "NOT RESPONDING" }
        );
    }
    Ok(())
}

fn is_root() -> bool {
    Cmd::new("id")
        .arg("-u")
        .read()
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}

/// Finds `program` on PATH or, for PostgreSQL, in Debian's versioned directory.
fn locate(program: &str) -> Option<PathBuf> {
    if let Some(p) = find_program(program) {
        return Some(p);
    }
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(program)))
        .filter(|p| p.is_file())
        .collect();
    versions.sort();
    versions.pop()
}

/// Locates `programs`, installing `kind`'s Debian package when missing and allowed.
fn ensure(kind: Kind, programs: &[&str]) -> Result<Vec<PathBuf>, Error> {
    ensure_package(kind.debian_package(), programs)
}

/// Locates `programs`, installing the Debian `package` that provides them when
/// they are missing and xtask runs as root with apt-get; otherwise fails with
/// the command to run.
pub(crate) fn ensure_package(package: &str, programs: &[&str]) -> Result<Vec<PathBuf>, Error> {
    let found: Option<Vec<PathBuf>> = programs.iter().map(|p| locate(p)).collect();
    if let Some(paths) = found {
        return Ok(paths);
    }
    if !(is_root() && has_program("apt-get")) {
        return Err(Error::msg(format!(
            "{} is not installed; install it with:\n    sudo apt-get install -y {package}",
            programs.join("/")
        )));
    }
    println!(
        "    {} not found: installing Debian package `{package}`",
        programs.join("/")
    );
    let install = || {
        Cmd::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .run()
    };
    if install().is_err() {
        Cmd::new("apt-get").args(["update"]).run()?;
        install()?;
    }
    programs
        .iter()
        .map(|p| {
            locate(p).ok_or_else(|| {
                Error::msg(format!(
                    "installed `{package}` but `{p}` is still not found"
                ))
            })
        })
        .collect()
}

fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn start(kind: Kind, base: &Path) -> Result<Service, Error> {
    let dir = base.join(kind.name());
    fs::create_dir_all(&dir)?;
    // A free port can be taken between our probe and the server's bind: retry.
    let mut last = Error::msg("not started");
    for _ in 0..3 {
        let port = free_port()?;
        let started = match kind {
            Kind::Postgres => start_postgres(&dir, port),
            Kind::Redis => start_redis(&dir, port),
            Kind::Etcd => start_etcd(&dir, port),
        };
        match started {
            Ok(child) => {
                return Ok(Service {
                    kind,
                    port,
                    dir,
                    child,
                });
            }
            Err(e) => last = e,
        }
    }
    Err(Error::msg(format!(
        "could not start {}: {last}",
        kind.name()
    )))
}

/// PostgreSQL refuses to run as root: run its tools as the `postgres` user then.
fn as_postgres_user(program: &Path) -> Cmd {
    if is_root() {
        Cmd::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(program)
    } else {
        Cmd::new(program)
    }
}

fn start_postgres(dir: &Path, port: u16) -> Result<Option<Child>, Error> {
    let bins = ensure(Kind::Postgres, &["initdb", "pg_ctl"])?;
    let (initdb, pg_ctl) = (&bins[0], &bins[1]);
    let data = dir.join("data");
    if is_root() {
        Cmd::new("chown")
            .args(["-R", "postgres:"])
            .arg(dir)
            .read()?;
    }
    if !data.join("PG_VERSION").exists() {
        as_postgres_user(initdb)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .read()?;
    }
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -F -c max_connections=200",
        dir.display()
    );
    as_postgres_user(pg_ctl)
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("postgres.log"))
        .args(["-w", "-t", "60", "-o", &opts, "start"])
        .read()
        .map_err(|e| with_log(e, &dir.join("postgres.log")))?;
    wait_for_port(port, Duration::from_secs(30))?;
    Ok(None)
}

fn start_redis(dir: &Path, port: u16) -> Result<Option<Child>, Error> {
    let bins = ensure(Kind::Redis, &["redis-server"])?;
    let log = dir.join("redis.log");
    Cmd::new(&bins[0])
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "yes"])
        .arg("--dir")
        .arg(dir)
        .arg("--pidfile")
        .arg(dir.join("redis.pid"))
        .arg("--logfile")
        .arg(&log)
        .read()?;
    wait_until(Duration::from_secs(20), || redis_ping(port)).map_err(|e| with_log(e, &log))?;
    Ok(None)
}

fn start_etcd(dir: &Path, port: u16) -> Result<Option<Child>, Error> {
    let bins = ensure(Kind::Etcd, &["etcd"])?;
    let peer = free_port()?;
    let client = format!("http://127.0.0.1:{port}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = fs::File::create(dir.join("etcd.log"))?;
    let child = Cmd::new(&bins[0])
        .args(["--name", "xtask", "--data-dir"])
        .arg(dir.join("data"))
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("xtask={peer_url}")])
        .into_command()
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    fs::write(dir.join("etcd.pid"), child.id().to_string())?;
    let mut child = Some(child);
    let ready = wait_until(Duration::from_secs(30), || {
        http_get(port, "/health").is_some_and(|body| body.contains("true"))
    });
    if let Err(e) = ready {
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        return Err(with_log(e, &dir.join("etcd.log")));
    }
    Ok(child)
}

fn stop(mut service: Service) -> Result<(), Error> {
    let name = service.kind.name();
    match service.kind {
        Kind::Postgres => {
            let pg_ctl = locate("pg_ctl")
                .ok_or_else(|| Error::msg("pg_ctl not found to stop PostgreSQL"))?;
            as_postgres_user(&pg_ctl)
                .arg("-D")
                .arg(service.dir.join("data"))
                .args(["-m", "immediate", "-w", "stop"])
                .read()?;
        }
        Kind::Redis | Kind::Etcd => {
            let pid_file = service.dir.join(format!("{name}.pid"));
            if let Ok(pid) = fs::read_to_string(&pid_file) {
                let _ = Cmd::new("kill").args(["-TERM", pid.trim()]).read();
            }
            if let Some(mut child) = service.child.take() {
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if child.try_wait()?.is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    // Wait until the port is free so a following run can't talk to a dying server.
    wait_until(Duration::from_secs(10), || !port_open(service.port))
        .map_err(|_| Error::msg(format!("{name} on port {} did not stop", service.port)))
}

fn with_log(e: Error, log: &Path) -> Error {
    let tail = fs::read_to_string(log)
        .map(|s| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        })
        .unwrap_or_default();
    Error::msg(format!("{e}\n--- {} (last lines)\n{tail}", log.display()))
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

fn wait_for_port(port: u16, timeout: Duration) -> Result<(), Error> {
    wait_until(timeout, || port_open(port))
}

/// Polls `ready` every 50ms until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::msg(format!("not ready after {timeout:?}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn redis_ping(port: u16) -> bool {
    exchange(port, b"PING\r\n").is_some_and(|r| r.starts_with("+PONG"))
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    exchange(port, req.as_bytes())
}

/// Sends `request` and reads the reply (until close or a short timeout).
fn exchange(port: u16, request: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(request).ok()?;
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.ends_with(b"\r\n") && out.starts_with(b"+") {
            break;
        }
    }
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}
