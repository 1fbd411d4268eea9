//! A real Apache httpd (Debian's `apache2`) in front of an AJP member through `mod_proxy_ajp`,
//! for comparisons with keel: a generated configuration in a temporary directory, one loopback
//! listener on a free port speaking HTTP/1.1 and h2c (mod_http2), `ProxyPass /` to the member
//! with its secret, and nothing else (no mod_headers, no mod_remoteip, httpd's defaults).
//! Stopped with SIGTERM (httpd then stops its workers), SIGKILL if that does not work, on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const APACHE2: &str = "/usr/sbin/apache2";
const MODULES: &str = "/usr/lib/apache2/modules";

/// A running httpd.
pub struct Httpd {
    /// Its listener.
    pub addr: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
}

impl Httpd {
    /// Starts httpd with `ProxyPass / ajp://<ajp>/ secret=<secret>` and waits until it accepts
    /// connections.
    pub fn start(ajp: SocketAddr, secret: &str) -> Httpd {
        assert!(
            Path::new(APACHE2).is_file() && Path::new(MODULES).join("mod_proxy_ajp.so").is_file(),
            "Apache httpd is missing: apt-get install apache2 (see .ci/run)"
        );
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            l.local_addr().expect("local addr")
        };
        let dir =
            std::env::temp_dir().join(format!("keel-httpd-{}-{}", std::process::id(), addr.port()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create httpd dir");
        let conf = dir.join("httpd.conf");
        let d = dir.display();
        let module = |name: &str, file: &str| format!("LoadModule {name} {MODULES}/{file}\n");
        let mut text = format!(
            "ServerRoot {d}\nDefaultRuntimeDir {d}\nPidFile {d}/httpd.pid\nErrorLog {d}/error.log\n\
             LogLevel warn\nListen {addr}\nServerName 127.0.0.1\n\
             # As root (CI), the workers run as Debian's www-data; otherwise this is ignored.\n\
             User www-data\nGroup www-data\n"
        );
        for (name, file) in [
            ("mpm_event_module", "mod_mpm_event.so"),
            ("authz_core_module", "mod_authz_core.so"),
            ("proxy_module", "mod_proxy.so"),
            ("proxy_ajp_module", "mod_proxy_ajp.so"),
            ("http2_module", "mod_http2.so"),
        ] {
            text.push_str(&module(name, file));
        }
        text.push_str(&format!(
            "Protocols h2c http/1.1\nProxyPass / ajp://{ajp}/ secret={secret}\n"
        ));
        std::fs::write(&conf, text).expect("write httpd.conf");
        let child = Command::new(APACHE2)
            .arg("-f")
            .arg(&conf)
            .arg("-DFOREGROUND")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {APACHE2}: {e}"));
        let mut h = Httpd {
            addr,
            dir,
            child: Some(child),
        };
        h.wait_ready(Duration::from_secs(20));
        h
    }

    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "httpd exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "httpd not ready within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://addr<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// httpd's stderr and error log so far.
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: the parent stops its worker processes, then exits.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
