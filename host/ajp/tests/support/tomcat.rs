//! A real Tomcat 10 (Debian `tomcat10`) for interop tests: its own CATALINA_BASE in a
//! temporary directory, an AJP connector on a free loopback port with a secret, an HTTP
//! connector on another (for side-by-side comparisons), `Engine jvmRoute`, and the test web
//! application (`tests/tomcat/KeelTestServlet.java` at /app/*, `KeelConformanceServlet.java` at
//! /app/conformance/*) compiled with javac.
//!
//! [`Tuning::Tests`] starts quickly (C1 only, serial GC, 64 threads per connector);
//! [`Tuning::Bench`] runs as a production Tomcat would (both JIT tiers, the parallel GC,
//! Tomcat's default 200 threads per connector) for `cargo xtask bench`, which includes this file.
//!
//! Java runs under a small `sh` guard that kills it with SIGKILL when a line arrives on its
//! stdin or the stdin closes — so Tomcat dies with the test process even when the test
//! binary exits without running destructors (shared instances live in statics).

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs Tomcat 10.
pub const CATALINA_HOME: &str = "/usr/share/tomcat10";
const SERVLET_API: &str = "/usr/share/java/tomcat10-servlet-api.jar";

/// A running Tomcat.
pub struct Tomcat {
    /// The AJP connector.
    pub ajp: SocketAddr,
    /// The HTTP connector.
    pub http: SocketAddr,
    /// The jvmRoute.
    pub route: String,
    /// The secret.
    pub secret: String,
    base: PathBuf,
    guard: Option<Child>,
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How the JVM and the connectors are set up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tuning {
    /// Quick to start, small: for tests.
    Tests,
    /// As in production: for measurements.
    Bench,
}

impl Tomcat {
    /// Starts a Tomcat for tests and waits until both connectors accept connections.
    pub fn start(route: &str, secret: &str) -> Tomcat {
        Self::start_tuned(route, secret, Tuning::Tests)
    }

    /// Starts a Tomcat set up as `tuning` says and waits until both connectors accept
    /// connections.
    pub fn start_tuned(route: &str, secret: &str, tuning: Tuning) -> Tomcat {
        assert!(
            Path::new(CATALINA_HOME).join("bin/bootstrap.jar").exists(),
            "Tomcat 10 is missing: apt-get install tomcat10 default-jdk-headless (see .ci/run)"
        );
        let base = std::env::temp_dir().join(format!(
            "keel-tomcat-{route}-{}-{}",
            std::process::id(),
            free_port().port()
        ));
        let _ = std::fs::remove_dir_all(&base);
        for d in [
            "conf",
            "logs",
            "temp",
            "work",
            "webapps",
            "app/WEB-INF/classes",
        ] {
            std::fs::create_dir_all(base.join(d)).expect("create CATALINA_BASE");
        }
        // Embedded, so the helper works from any crate's tests (keel's include this file).
        let sources = [
            (
                "KeelTestServlet.java",
                include_str!("../tomcat/KeelTestServlet.java"),
            ),
            (
                "KeelConformanceServlet.java",
                include_str!("../tomcat/KeelConformanceServlet.java"),
            ),
        ];
        let mut javac = Command::new("javac");
        javac
            .arg("-d")
            .arg(base.join("app/WEB-INF/classes"))
            .arg("-cp")
            .arg(SERVLET_API);
        for (name, text) in sources {
            let src = base.join(name);
            std::fs::write(&src, text).expect("write servlet");
            javac.arg(&src);
        }
        run(&mut javac);
        std::fs::write(
            base.join("app/WEB-INF/web.xml"),
            r#"<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0" metadata-complete="true">
  <servlet><servlet-name>keel</servlet-name><servlet-class>KeelTestServlet</servlet-class></servlet>
  <servlet-mapping><servlet-name>keel</servlet-name><url-pattern>/*</url-pattern></servlet-mapping>
  <servlet><servlet-name>conformance</servlet-name><servlet-class>KeelConformanceServlet</servlet-class></servlet>
  <servlet-mapping><servlet-name>conformance</servlet-name><url-pattern>/conformance/*</url-pattern></servlet-mapping>
</web-app>
"#,
        )
        .expect("write web.xml");
        let (ajp, http) = (free_port(), free_port());
        let (threads, jvm): (&str, &[&str]) = match tuning {
            Tuning::Tests => (
                r#" maxThreads="64""#,
                &["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xss512k"],
            ),
            Tuning::Bench => ("", &["-XX:+UseParallelGC", "-Xms256m", "-Xmx512m"]),
        };
        std::fs::write(
            base.join("conf/server.xml"),
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector protocol="AJP/1.3" address="127.0.0.1" port="{ajp_port}"
               secretRequired="true" secret="{secret}"{threads}/>
    <Connector protocol="HTTP/1.1" address="127.0.0.1" port="{http_port}"{threads}/>
    <Engine name="Catalina" defaultHost="localhost" jvmRoute="{route}">
      <Host name="localhost" appBase="webapps" autoDeploy="false" deployOnStartup="false" unpackWARs="false">
        <Context path="/app" docBase="{docbase}" reloadable="false">
          <JarScanner scanClassPath="false" scanManifest="false"/>
        </Context>
      </Host>
    </Engine>
  </Service>
</Server>
"#,
                ajp_port = ajp.port(),
                http_port = http.port(),
                docbase = base.join("app").display(),
            ),
        )
        .expect("write server.xml");

        let stdout = std::fs::File::create(base.join("logs/stdout.log")).expect("log file");
        let stderr = stdout.try_clone().expect("log file");
        let guard = Command::new("sh")
            .arg("-c")
            .arg(r#"java "$@" </dev/null & j=$!; read _; kill -9 $j 2>/dev/null; wait $j"#)
            .arg("tomcat")
            .arg(format!("-Dcatalina.home={CATALINA_HOME}"))
            .arg(format!("-Dcatalina.base={}", base.display()))
            .arg(format!("-Djava.io.tmpdir={}", base.join("temp").display()))
            // For the test servlets that say which Tomcat served (`/counter`).
            .arg(format!("-Dkeel.test.route={route}"))
            .args(jvm)
            .arg("-cp")
            .arg(format!(
                "{CATALINA_HOME}/bin/bootstrap.jar:{CATALINA_HOME}/bin/tomcat-juli.jar"
            ))
            .arg("org.apache.catalina.startup.Bootstrap")
            .arg("start")
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start java");
        let mut t = Tomcat {
            ajp,
            http,
            route: route.to_owned(),
            secret: secret.to_owned(),
            base,
            guard: Some(guard),
        };
        t.wait_ready(Duration::from_secs(90));
        t
    }

    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let up = |a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok();
            if up(self.ajp) && up(self.http) {
                return;
            }
            if let Some(Ok(Some(status))) = self.guard.as_mut().map(|g| g.try_wait()) {
                panic!(
                    "Tomcat exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "Tomcat not ready within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process id of the guard whose child is the JVM (`cargo xtask bench` reads the CPU
    /// Tomcat spends); `None` once killed.
    pub fn guard_pid(&self) -> Option<u32> {
        self.guard.as_ref().map(Child::id)
    }

    /// Tomcat's console output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.base.join("logs/stdout.log")).unwrap_or_default()
    }

    /// Kills Tomcat with SIGKILL and waits until it is gone.
    pub fn kill9(&mut self) {
        if let Some(mut g) = self.guard.take() {
            if let Some(stdin) = g.stdin.as_mut() {
                let _ = stdin.write_all(b"kill\n");
            }
            let _ = g.wait();
        }
    }
}

impl Drop for Tomcat {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
