//! The `smile` binary as an operator runs it: first start, keys, config, crash and restart.

use crate::support::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A `smile serve` process and what it printed on start.
pub(crate) struct Process {
    pub child: Child,
    pub addr: std::net::SocketAddr,
    pub key: Option<(String, String)>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smile() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_smile"));
    command.env_remove("SMILE_LISTEN").env_remove("SMILE_DATA_DIR").env("SMILE_LOG", "warn");
    command
}

pub(crate) fn serve(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Process {
    serve_command(data_dir, args, envs, smile())
}

/// Like [`serve`], and the lines the server logs (at `warn`) are collected in `log`.
pub(crate) fn serve_logged(data_dir: &Path, args: &[&str], log: Arc<Mutex<Vec<String>>>) -> Process {
    let mut command = smile();
    command.stderr(Stdio::piped());
    let mut process = serve_command(data_dir, args, &[], command);
    let stderr = process.child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            log.lock().expect("lock").push(line);
        }
    });
    process
}

fn serve_command(data_dir: &Path, args: &[&str], envs: &[(&str, &str)], mut command: Command) -> Process {
    command.args(["serve", "--listen", "127.0.0.1:0", "--rate-limit", "0", "--data-dir"]).arg(data_dir).args(args);
    if let Some(url) = Backend::current().database_url() {
        command.args(["--database-url", &url]);
    }
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.stdout(Stdio::piped()).spawn().expect("smile serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let (mut key, mut secret) = (None, None);
    let addr = loop {
        let line = lines.next().expect("smile serve printed its address").expect("line");
        if let Some(v) = line.strip_prefix("API key: ") {
            key = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("API secret: ") {
            secret = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("Listening on http://") {
            break v.parse().expect("address");
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Process { child, addr, key: key.zip(secret) }
}

pub(crate) fn keys_create(data_dir: &Path, args: &[&str]) -> (String, String) {
    let mut command = smile();
    command.args(["keys", "create", "--data-dir"]).arg(data_dir).args(args);
    if let Some(url) = Backend::current().database_url() {
        command.args(["--database-url", &url]);
    }
    let output = command.output().expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).expect("utf8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let key = lines[0].strip_prefix("API key: ").expect("key line").to_owned();
    let secret = lines[1].strip_prefix("API secret: ").expect("secret line").to_owned();
    (key, secret)
}

on_both_backends! {
async fn first_start_prints_sandbox_keys_and_keys_create_makes_more() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let server = serve(&data, &[], &[]);
    let (key, secret) = server.key.clone().expect("first start prints keys");
    if Backend::current().database_url().is_none() {
        assert!(data.join("smile.db").exists());
    }
    let sandbox = Api::new(server.addr, &key, &secret);
    let (status, body) = sandbox.get("/v1/webhooks").await;
    assert_eq!(status, 200, "{body}");

    let (pk, ps) = keys_create(&data, &["--tenant", "acme", "--mode", "production"]);
    let production = Api::new(server.addr, &pk, &ps);
    let (status, body) = production
        .post("/v1/webhooks", json!({"name": "n", "url": "https://example.com/h", "eventTypes": ["ALL_EVENTS"], "active": true, "secret": "s"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["mode"], "PRODUCTION");
    let (_, list) = sandbox.get("/v1/webhooks").await;
    assert_eq!(
        list["data"]["items"],
        json!([]),
        "acme's production subscription is not the default sandbox's"
    );

    let bad = smile()
        .args(["keys", "create", "--tenant", "Not Valid", "--data-dir"])
        .arg(&data)
        .output()
        .expect("runs");
    assert!(!bad.status.success());

    // A second start on the same data prints no new keys, and the old ones still work.
    drop(server);
    let again = serve(&data, &[], &[]);
    assert!(again.key.is_none());
    let (status, _) = Api::new(again.addr, &key, &secret)
        .get("/v1/webhooks")
        .await;
    assert_eq!(status, 200);
}

async fn settings_come_from_flags_then_environment_then_file() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("smile.toml");
    std::fs::write(
        &config,
        "egress_ips = [\"198.51.100.1\"]\nmax_in_flight = 3\n",
    )
    .expect("write");
    let data = dir.path().join("data");
    let from_file = serve(&data, &["--config", config.to_str().expect("path")], &[]);
    let (key, secret) = from_file.key.clone().expect("keys");
    let (_, body) = Api::new(from_file.addr, &key, &secret)
        .get("/v1/egressIps")
        .await;
    assert_eq!(body["data"]["ips"], json!(["198.51.100.1"]));
    drop(from_file);

    let from_env = serve(
        &data,
        &["--config", config.to_str().expect("path")],
        &[("SMILE_EGRESS_IPS", "192.0.2.1,192.0.2.2")],
    );
    let (_, body) = Api::new(from_env.addr, &key, &secret)
        .get("/v1/egressIps")
        .await;
    assert_eq!(body["data"]["ips"], json!(["192.0.2.1", "192.0.2.2"]));
    drop(from_env);

    let output = smile()
        .args(["serve", "--retry-schedule", "soon"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("retry-schedule"));
}

async fn a_killed_server_delivers_everything_it_acknowledged_after_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    // Slow answers and two connections at a time: most deliveries are still pending at the kill.
    let receiver = Receiver::scripted(vec![Reply::Slow(Duration::from_millis(100)); 150]).await;
    // A short lease: on PostgreSQL the restarted node takes over the dead one's work when it runs out.
    let args = [
        "--max-in-flight",
        "2",
        "--retry-schedule",
        "200ms,200ms,200ms",
        "--lease",
        "2s",
        "--poll-interval",
        "500ms",
    ];
    let first = serve(&data, &args, &[]);
    let (key, secret) = first.key.clone().expect("keys");
    let (ok, os) = keys_create(&data, &["--operator"]);
    let sandbox = Api::new(first.addr, &key, &secret);
    let operator = Api::new(first.addr, &ok, &os);
    let sub = sandbox
        .subscribe(&receiver.url(), &["ALL_EVENTS"], "s")
        .await;
    let mut acknowledged = HashSet::new();
    for i in 0..150 {
        acknowledged.insert(
            publish(
                &operator,
                "default",
                "SANDBOX",
                "USER_CREATED",
                json!({"userId": format!("u{i}")}),
            )
            .await,
        );
    }
    let mut first = first;
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reaped");
    let delivered_before = receiver.hits().len();
    assert!(
        delivered_before < 150,
        "the kill came before all were delivered ({delivered_before})"
    );

    let second = serve(&data, &args, &[]);
    let sandbox = Api::new(second.addr, &key, &secret);
    eventually(
        Duration::from_secs(60),
        "every acknowledged event delivered",
        || async {
            let got: HashSet<String> = receiver
                .hits()
                .iter()
                .map(|h| h.header("webhook-id").to_owned())
                .collect();
            acknowledged.is_subset(&got).then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "no delivery left pending",
        || async {
            let mut pending = 0;
            let mut cursor = String::new();
            loop {
                let (_, body) = sandbox
                    .get(&format!("/v1/webhooks/{sub}/deliveries?size=150{cursor}"))
                    .await;
                let items = body["data"]["items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                pending += items.iter().filter(|d| d["status"] != "SUCCEEDED").count();
                match body["data"]["nextCursor"].as_str() {
                    Some(c) => cursor = format!("&cursor={c}"),
                    None => break,
                }
            }
            (pending == 0).then_some(())
        },
    )
    .await;
    let duplicates = receiver.hits().len() - acknowledged.len();
    println!(
        "delivered before the kill: {delivered_before}; duplicates after restart: {duplicates}"
    );
}
}

/// `smile serve` under `ulimit -n 1024`, as on a default Linux box.
fn serve_with_fd_limit(data_dir: &Path, args: &[&str]) -> Process {
    let mut command = Command::new("sh");
    command
        .args(["-c", "ulimit -n 1024 && exec \"$@\"", "sh", env!("CARGO_BIN_EXE_smile")])
        .env_remove("SMILE_LISTEN")
        .env_remove("SMILE_DATA_DIR")
        .env("SMILE_LOG", "error");
    serve_command(data_dir, args, &[], command)
}

/// Opens a connection that sends a request line and one header, then nothing more.
async fn slow_client(addr: std::net::SocketAddr) -> Option<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: smile\r\n").await.ok()?;
    Some(stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_slow_clients_does_not_lock_out_real_ones() {
    let dir = tempfile::tempdir().expect("dir");
    // Slow clients stay as long as the test needs them; it is the cap and shedding that
    // must let real clients in.
    let node = serve_with_fd_limit(dir.path(), &["--header-timeout", "60s"]);
    let (key, secret) = node.key.clone().expect("keys");
    let mut slow = Vec::new();
    for _ in 0..1_100 {
        if let Some(stream) = slow_client(node.addr).await {
            slow.push(stream);
        }
    }
    assert!(slow.len() > 1_000, "opened {} slow connections", slow.len());
    install_crypto();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().expect("client");
    for round in 0..3 {
        let started = std::time::Instant::now();
        let health = client.get(format!("http://{}/health", node.addr)).send().await;
        let health = health.unwrap_or_else(|e| panic!("round {round}: /health did not answer within 1 s: {e}"));
        assert_eq!(health.status(), 200);
        let listed = client
            .get(format!("http://{}/v1/webhooks", node.addr))
            .basic_auth(&key, Some(&secret))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: an authenticated GET did not answer within 1 s: {e}"));
        assert_eq!(listed.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(2), "round {round}: {:?}", started.elapsed());
        // The flood goes on: replace what was shed.
        for _ in 0..100 {
            if let Some(stream) = slow_client(node.addr).await {
                slow.push(stream);
            }
        }
    }
}

/// Reads until the server closes the connection (or answers), with a deadline.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a 408, or the answer to an earlier request
        }
    }
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("dir");
    let node = serve(dir.path(), &["--header-timeout", "1s", "--idle-timeout", "1s", "--body-timeout", "1s"], &[]);
    let mut slow = slow_client(node.addr).await.expect("connects");
    assert!(closed_within(&mut slow, Duration::from_secs(5)).await, "a client slow to send headers is cut off");

    let mut idle = tokio::net::TcpStream::connect(node.addr).await.expect("connects");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: smile\r\n\r\n").await.expect("request");
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await, "an idle keep-alive connection is closed");

    // A body sent a few bytes and then nothing: the request fails with a 400, in time.
    use base64::Engine as _;
    let (key, secret) = node.key.clone().expect("keys");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"));
    let mut trickle = tokio::net::TcpStream::connect(node.addr).await.expect("connects");
    let head = format!(
        "POST /v1/webhooks HTTP/1.1\r\nHost: smile\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\""
    );
    trickle.write_all(head.as_bytes()).await.expect("request");
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 4096];
        let n = trickle.read(&mut buf).await.unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .expect("a client slow to send its body gets an answer within the body timeout");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

/// Sends `head` and then `size` bytes of `fill`, stopping when the server stops reading;
/// returns the status line of the answer, if one came.
async fn stream_upload(addr: std::net::SocketAddr, head: String, prefix: Vec<u8>, size: usize) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(&prefix).await.ok()?;
    let chunk = vec![b'A'; 64 * 1024];
    let mut sent = prefix.len();
    while sent < size {
        let n = chunk.len().min(size - sent);
        if stream.write_all(&chunk[..n]).await.is_err() {
            break;
        }
        sent += n;
    }
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer)).await.ok()?.ok()?;
    String::from_utf8_lossy(&answer[..n]).lines().next().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_uploads_are_refused_without_growing_memory() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("dir");
    let node = serve(dir.path(), &[], &[]);
    let (key, secret) = node.key.clone().expect("keys");
    let api = Api::new(node.addr, &key, &secret);
    let (status, user) = api.post("/v1/users", json!({})).await;
    assert_eq!(status, 201, "{user}");
    let token = user["data"]["token"]["accessToken"].as_str().expect("token").to_owned();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"));
    let pid = node.child.id();
    let before = rss_mib(pid);
    let peak = Arc::new(Mutex::new(before));
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, watching) = (peak.clone(), watching.clone());
        tokio::spawn(async move {
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let now = rss_mib(pid);
                {
                    let mut peak = peak.lock().expect("lock");
                    *peak = peak.max(now);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    const MB: usize = 1024 * 1024;
    let mut uploads = Vec::new();
    for i in 0..6 {
        // Multipart to the widget's route, 60 MB in one file part.
        let boundary = "smileboundary";
        let prefix = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"fileType\"\r\n\r\nPAYSLIP\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big{i}.pdf\"\r\n\
             Content-Type: application/pdf\r\n\r\n%PDF-1.4\n"
        );
        let head = format!(
            "POST /link/v1/archives HTTP/1.1\r\nHost: smile\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
            60 * MB
        );
        uploads.push(tokio::spawn(stream_upload(node.addr, head, prefix.into_bytes(), 60 * MB)));
        // JSON to the API's route, 61 MB.
        let head = format!(
            "POST /v1/archives HTTP/1.1\r\nHost: smile\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            61 * MB
        );
        let prefix =
            b"{\"fileType\":\"PAYSLIP\",\"rawFiles\":[{\"fileExtensionType\":\"PDF\",\"fileContent\":\"".to_vec();
        uploads.push(tokio::spawn(stream_upload(node.addr, head, prefix, 61 * MB)));
    }
    for upload in uploads {
        if let Some(status) = upload.await.expect("upload") {
            assert!(status.starts_with("HTTP/1.1 4"), "refused: {status}");
        }
    }
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.await.expect("sampler");
    let grew = *peak.lock().expect("lock") - before;
    println!("RSS {before:.0} MiB before; peak grew by {grew:.1} MiB");
    assert!(grew < 64.0, "six concurrent 60 MB uploads of each kind grew RSS by {grew:.1} MiB");
    let (status, _) = api.get("/v1/webhooks").await;
    assert_eq!(status, 200, "the server still serves");
}

/// A small tmpfs, unmounted (lazily) when dropped; None, with a notice, when not root.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let root = Command::new("id").arg("-u").output().ok().is_some_and(|o| o.stdout.starts_with(b"0\n"));
        let dir = tempfile::tempdir().expect("dir");
        let mounted = root
            && Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
        if !mounted {
            println!("notice: cannot mount a small tmpfs (needs root); skipping the full-disk test");
            return None;
        }
        Some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[tokio::test]
async fn a_full_disk_answers_503_loses_nothing_acknowledged_and_recovers() {
    use std::io::Write;
    let Some(disk) = SmallDisk::mount("6m") else {
        return;
    };
    let data_dir = disk.0.path().join("data");
    let server = TestServer::with(|o| {
        o.data_dir = data_dir.clone();
        o.database_url = None;
    })
    .await;
    let operator = server.operator().await;
    // Fill what is left of the disk.
    let filler_path = disk.0.path().join("filler");
    let mut filler = std::fs::File::create(&filler_path).expect("filler");
    let block = vec![0u8; 64 * 1024];
    while filler.write_all(&block).is_ok() {}
    let _ = filler.flush();
    drop(filler);

    let event = |n: usize| json!({"tenantId": "default", "mode": "SANDBOX", "type": "USER_CREATED", "data": {"userId": format!("u{n}-{}", "x".repeat(2000))}});
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for n in 0..2_000 {
        let (status, body) = operator.post("/v1/operator/events", event(n)).await;
        if status == 200 {
            acknowledged.push(body["data"]["id"].as_str().expect("id").to_owned());
        } else {
            refused = Some((status, body));
            break;
        }
    }
    let (status, body) = refused.expect("a publish is refused once the disk is full");
    assert_eq!((status, body["code"].as_str()), (503, Some("SERVER_UNAVAILABLE")), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("storage is full")), "{body}");

    std::fs::remove_file(&filler_path).expect("space returns");
    let id = eventually(Duration::from_secs(10), "publishing works again once space returns", || async {
        let (status, body) = operator.post("/v1/operator/events", event(9_999)).await;
        (status == 200).then(|| body["data"]["id"].as_str().map(str::to_owned)).flatten()
    })
    .await;
    acknowledged.push(id);
    for id in &acknowledged {
        let (status, body) = server.sandbox.get(&format!("/v1/events/{id}")).await;
        assert_eq!(status, 200, "acknowledged event {id} is kept: {body}");
    }
    println!("{} acknowledged, all kept; refused with {status}", acknowledged.len());
}

#[tokio::test]
async fn sandbox_work_left_unfinished_by_a_crash_is_done_after_the_restart() {
    use smile_sandbox::archives::SAMPLES;
    let dir = tempfile::tempdir().expect("dir");
    let node = serve(dir.path(), &[], &[]);
    let (key, secret) = node.key.clone().expect("keys");
    let api = Api::new(node.addr, &key, &secret);
    let receiver = Receiver::start().await;
    api.subscribe(&receiver.url(), &["ALL_EVENTS"], "s").await;
    let (user, link) = new_user(&api).await;
    let account = link.connect("sss", "gpalomero1234@smileapi.io", "123456").await;
    let account = account["id"].as_str().expect("account id").to_owned();
    let png = SAMPLES.iter().find(|s| s.name.ends_with(".png")).expect("png sample");
    let (status, uploaded) = link.upload("PAYSLIP", png.name, png.content).await;
    assert_eq!(status, 200, "{uploaded}");
    let archive = uploaded["data"]["id"].as_str().expect("id").to_owned();
    wait_for_event(&receiver, "TASK_FINISHED").await;
    wait_for_event(&receiver, "ARCHIVE_ANALYZED").await;
    drop(node); // SIGKILL

    // What a kill in the middle of the sync and of the analysis leaves: the work recorded as
    // unfinished, the archive not analysed yet.
    {
        let db = rusqlite::Connection::open(dir.path().join("smile.db")).expect("open");
        let job = |id: &str, body: Value| {
            db.execute(
                "INSERT INTO documents (kind, id, tenant_id, mode, user_id, source_id, created_ms, body) \
                 VALUES ('sandbox_job', ?1, 'default', 'SANDBOX', ?2, ?1, 1, ?3)",
                rusqlite::params![id, user, body.to_string()],
            )
            .expect("job");
        };
        job(&account, json!({"work": "sync", "accountId": account, "userId": user, "taskType": "LINK_ACCOUNT"}));
        job(&archive, json!({"work": "analyse", "archiveId": archive, "userId": user, "fileType": "PAYSLIP"}));
        db.execute(
            "UPDATE documents SET body = json_set(body, '$.state.status', 'STARTED') WHERE kind = 'archive' AND id = ?1",
            [&archive],
        )
        .expect("archive back to STARTED");
    }
    let count = |event_type: &str| events(&receiver).iter().filter(|(t, _)| t == event_type).count();
    let (tasks, analysed) = (count("TASK_FINISHED"), count("ARCHIVE_ANALYZED"));

    let node = serve(dir.path(), &[], &[]);
    eventually(Duration::from_secs(15), "the sync and the analysis are redone, with their events", || async {
        (count("TASK_FINISHED") > tasks && count("ARCHIVE_ANALYZED") > analysed).then_some(())
    })
    .await;
    let (_, stored) = api.on(node.addr).get(&format!("/v1/archives/{archive}")).await;
    assert_eq!(stored["data"]["state"]["status"], "ANALYZED");
    eventually(Duration::from_secs(5), "the redone work is no longer pending", || async {
        let db = rusqlite::Connection::open(dir.path().join("smile.db")).ok()?;
        let left: i64 =
            db.query_row("SELECT count(*) FROM documents WHERE kind = 'sandbox_job'", [], |r| r.get(0)).ok()?;
        (left == 0).then_some(())
    })
    .await;
}

/// `smile bench --scenario http` runs its load generator as a process of its own (issue 8's
/// setup): the report must come back whole, every acknowledged event delivered, with both
/// rulers (the generator apart, and the same client in the bench's process) and the ceiling
/// of a relay that stores and signs nothing (every event relayed, or the bench fails).
#[tokio::test]
async fn the_http_bench_publishes_from_a_generator_process_and_loses_nothing() {
    let mut command = smile();
    command.args(["bench", "--scenario", "http", "--http-events", "300", "--concurrency", "8"]);
    let output = tokio::task::spawn_blocking(move || command.output()).await.expect("join").expect("smile bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "smile bench failed: {stderr}");
    assert!(stderr.contains("the generator (a process of its own) into the receiver"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(stdout.lines().last().expect("a report line")).expect("JSON");
    assert_eq!(report["scenario"], "http");
    assert_eq!(report["events"], 300, "every publish acknowledged and read back from the generator: {report}");
    assert_eq!(report["lost"], 0, "{report}");
    for field in ["baseline_req_per_s", "in_process_baseline_req_per_s", "deliveries_per_s", "p99_ms"] {
        assert!(report[field].as_f64().is_some_and(|v| v > 0.0), "{field} in {report}");
    }
    assert!(stderr.contains("through a relay that stores and signs nothing"), "{stderr}");
    let (ceiling, raw) = (report["relay_ceiling_per_s"].as_f64(), report["baseline_req_per_s"].as_f64());
    let ratio = report["relay_ceiling_ratio"].as_f64();
    assert!(ceiling.is_some_and(|c| c > 0.0), "{report}");
    // serde_json reads floats back to within an ulp, not always to the same bits.
    let expected = ceiling.zip(raw).map(|(c, r)| c / r).unwrap_or(f64::NAN);
    let off = ratio.map_or(f64::INFINITY, |ratio| (ratio - expected).abs() / expected);
    assert!(off < 1e-9, "the ceiling over the same raw rate: {report}");
}

/// The allocator asks the kernel for no transparent huge pages: it did, and the kernel zeroed
/// 2 MiB at each first touch of its memory, 6 % of fan-out-1000's CPU (docs/benchmarks.md).
/// Under the kernel's `madvise` setting only a process that asks gets them.
#[tokio::test]
async fn the_server_asks_for_no_transparent_huge_pages() {
    let setting = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if !setting.contains("[madvise]") {
        eprintln!("SKIPPED: transparent huge pages are {:?} here, not madvise", setting.trim());
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let node = serve(dir.path(), &[], &[]);
    let (key, secret) = node.key.clone().expect("keys");
    let api = Api::new(node.addr, &key, &secret);
    for _ in 0..100 {
        let (status, body) = api.get("/v1/webhooks").await;
        assert_eq!(status, 200, "{body}");
    }
    let memory = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", node.child.id())).expect("smaps_rollup");
    let huge = memory.lines().find_map(|line| line.strip_prefix("AnonHugePages:")).map(str::trim);
    assert_eq!(huge, Some("0 kB"), "{memory}");
}
