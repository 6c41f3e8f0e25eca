//! The stock JS client (`tests/js/client.mjs`: yjs + y-websocket 3 under node), run as a child
//! process.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// `tests/js`.
pub fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// A running `node tests/js/client.mjs ...`; killed on drop.
pub struct JsClient {
    child: Option<Child>,
    args: Vec<String>,
}

impl JsClient {
    /// Starts the client with `args` (see client.mjs for them). Panics with directions when
    /// node or the npm packages are missing.
    pub fn spawn(args: &[String]) -> JsClient {
        let dir = js_dir();
        if !dir.join("node_modules/y-websocket").is_dir() || !dir.join("node_modules/yjs").is_dir()
        {
            panic!(
                "{}/node_modules is missing: run `npm ci --prefix tests/js` (the README test command ./scripts/test.sh does it)",
                dir.display()
            );
        }
        let child = Command::new("node")
            .arg(dir.join("client.mjs"))
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run node ({e}): install Node.js 20+ (Debian: apt-get install nodejs npm)")
            });
        JsClient {
            child: Some(child),
            args: args.to_vec(),
        }
    }

    /// Waits for the client to exit (killing it after `timeout`) and returns its output.
    #[allow(unsafe_code)] // kill(2)
    pub async fn wait(mut self, timeout: Duration) -> Output {
        let child = self.child.take().expect("waited once");
        let pid = child.id();
        let waiter = tokio::task::spawn_blocking(move || child.wait_with_output());
        match tokio::time::timeout(timeout, waiter).await {
            Ok(Ok(Ok(out))) => out,
            Ok(Ok(Err(e))) => panic!("waiting for node: {e}"),
            Ok(Err(e)) => panic!("waiting for node: {e}"),
            Err(_) => {
                // SAFETY: kill(2) on our own child's pid; the blocking waiter reaps it.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
                panic!(
                    "node client.mjs {:?} did not finish within {timeout:?}",
                    self.args
                )
            }
        }
    }

    /// Waits for a successful exit and returns the final text it printed.
    pub async fn final_text(self, timeout: Duration) -> String {
        let args = self.args.clone();
        let out = self.wait(timeout).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "node client.mjs {args:?} failed ({}):\n{stderr}{stdout}",
            out.status
        );
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("client.mjs printed no JSON:\n{stdout}\n{stderr}"));
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("client.mjs printed bad JSON ({e}): {line}"));
        v["text"]
            .as_str()
            .unwrap_or_else(|| panic!("no text in {line}"))
            .to_string()
    }
}

impl Drop for JsClient {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
