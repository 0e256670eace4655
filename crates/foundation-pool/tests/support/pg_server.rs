//! A private PostgreSQL instance a test owns, so it can stop and start the
//! real server: `initdb` into a fresh directory, `pg_ctl` on a free loopback
//! port. Binaries come from PATH or Debian's `/usr/lib/postgresql/*/bin`;
//! as root they run as the `postgres` user (PostgreSQL refuses root), the way
//! xtask starts its servers. Dropping the guard stops the server and removes
//! the directory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct PgServer {
    dir: PathBuf,
    pg_ctl: PathBuf,
    pub port: u16,
    running: bool,
}

fn locate(program: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    });
    if let Some(p) = on_path {
        return p;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path().join("bin").join(program)))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("`{program}` not found on PATH or in /usr/lib/postgresql/*/bin: run `cargo xtask test`, which installs PostgreSQL")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("probe a free port");
    l.local_addr().expect("probed port").port()
}

impl PgServer {
    /// Creates a cluster in a fresh temporary directory and starts it.
    pub fn start() -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "foundation-pool-pg-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the server directory");
        if is_root() {
            let mut c = Command::new("chown");
            c.arg("postgres:").arg(&dir);
            run(c, "chown");
        }
        let mut server = Self {
            pg_ctl: locate("pg_ctl"),
            dir,
            port: free_port(),
            running: false,
        };
        let mut init = as_postgres(&locate("initdb"));
        init.arg("-D").arg(server.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        run(init, "initdb");
        server.start_again();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (on the same port) and waits until it accepts
    /// connections (bounded by `pg_ctl -t`).
    pub fn start_again(&mut self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -F",
            self.port,
            self.dir.display()
        );
        let mut c = as_postgres(&self.pg_ctl);
        c.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-w", "-t", "30", "-o", &opts, "start"]);
        self.running = true;
        let out = c.output().expect("run pg_ctl start");
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
            panic!(
                "pg_ctl start failed ({}): {}\nserver log:\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "server not listening on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `pg_ctl -m fast stop`: backends are terminated, then the server exits.
    pub fn stop(&mut self) {
        let mut c = as_postgres(&self.pg_ctl);
        c.arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-t", "30", "stop"]);
        run(c, "pg_ctl stop");
        self.running = false;
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            let _ = as_postgres(&self.pg_ctl)
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "-t", "30", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
