//! The `herald` command line, run as a real process against a real stack:
//! resources created through it (parsed from `--output json`), `herald
//! listen` receiving and verifying real deliveries, `herald verify` on a
//! delivery's own headers and body, `recover` following re-sent deliveries,
//! retry policies and subscription updates, and the exit statuses scripts
//! rely on.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use herald_tests::{ADMIN_TOKEN, Receiver, Stack};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Longest any one command may take; every wait here is bounded.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(30);

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `herald` pointed at one stack with one token and a private profile file,
/// so nothing of the user's own configuration is read or written.
struct Herald {
    url: String,
    token: String,
    config: PathBuf,
}

impl Herald {
    fn new(stack: &Stack, token: &str) -> Herald {
        let config = std::env::temp_dir()
            .join(format!("herald-cli-test-{}", herald_tests::unique_prefix()))
            .join("profiles.json");
        Herald { url: stack.gateway_url.clone(), token: token.to_owned(), config }
    }

    fn with_token(&self, token: &str) -> Herald {
        Herald { url: self.url.clone(), token: token.to_owned(), config: self.config.clone() }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(herald_tests::binary("herald"));
        command
            .args(args)
            .env("HERALD_URL", &self.url)
            .env("HERALD_TOKEN", &self.token)
            .env("HERALD_CONFIG", &self.config)
            .env_remove("HERALD_TENANT")
            .env_remove("HERALD_PROFILE")
            .env_remove("HERALD_WEBHOOK_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn run_with(&self, mut command: Command, stdin: Option<&[u8]>) -> Ran {
        command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = command.spawn().expect("herald runs (cargo build --bins builds it)");
        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(bytes).await.unwrap();
            drop(pipe);
        }
        let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await.expect("herald finished");
        let output = output.unwrap();
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    async fn run(&self, args: &[&str]) -> Ran {
        self.run_with(self.command(args), None).await
    }

    async fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Ran {
        self.run_with(self.command(args), Some(stdin)).await
    }

    /// Runs with `--output json`, expects success, and parses the answer.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let ran = self.run(&all).await;
        assert_eq!(ran.code, 0, "herald {args:?} failed: {}{}", ran.stdout, ran.stderr);
        serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("herald {args:?} printed no JSON ({e}): {}", ran.stdout))
    }
}

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_else(|| panic!("no {field} in {value}")).to_owned()
}

/// Reads lines from `herald listen` until one satisfies `done`; answers all read.
async fn read_until(lines: &mut tokio::io::Lines<BufReader<ChildStdout>>, done: impl Fn(&str) -> bool) -> String {
    let mut seen = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if done(&line) {
                return true;
            }
        }
        false
    };
    let finished = tokio::time::timeout(WAIT, read).await;
    assert!(matches!(finished, Ok(true)), "herald listen never printed the line; it printed:\n{seen}");
    seen
}

/// The tenant `acme` with a key, and the event type `order.shipped`, made through the CLI.
async fn tenant_and_type(admin: &Herald) -> String {
    let tenant = admin.json(&["tenants", "create", "--id", "acme", "--name", "Acme"]).await;
    assert_eq!(tenant["id"], "acme");
    let key = admin.json(&["tenants", "keys", "create", "acme", "--name", "ci"]).await;
    let schema = r#"{"type":"object","required":["orderId"],"properties":{"orderId":{"type":"string"}}}"#;
    let event_type = admin.json(&["event-types", "create", "--name", "order.shipped", "--schema", schema]).await;
    assert_eq!(event_type["name"], "order.shipped");
    text(&key, "key")
}

async fn spawn_listen(herald: &Herald, secret: &str) -> (Child, tokio::io::Lines<BufReader<ChildStdout>>, String) {
    let mut command = herald.command(&["listen", "--port", "0", "--secret", secret]);
    command.stdin(Stdio::null()).stderr(Stdio::inherit());
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = read_until(&mut lines, |line| line.starts_with("listening on ")).await;
    let addr = banner
        .lines()
        .find_map(|l| l.strip_prefix("listening on http://"))
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .to_owned();
    (child, lines, addr)
}

#[tokio::test]
async fn the_walk_through_runs_on_the_command_line() {
    let stack = Stack::start().await;
    let admin = Herald::new(&stack, ADMIN_TOKEN);
    let key = tenant_and_type(&admin).await;
    let integrator = admin.with_token(&key);

    // The endpoint first (its secret is what listen checks), then pointed at listen.
    let endpoint = integrator.json(&["endpoints", "create", "--url", "http://127.0.0.1:9/nowhere"]).await;
    let (endpoint_id, secret) = (text(&endpoint, "id"), text(&endpoint, "secret"));
    assert!(secret.starts_with("whsec_"), "{endpoint}");
    let (mut listen, mut lines, addr) = spawn_listen(&integrator, &secret).await;
    let url = format!("http://{addr}/hook");
    let updated = integrator.json(&["endpoints", "update", &endpoint_id, "--url", &url]).await;
    assert_eq!(updated["url"], url.as_str());
    let subscription =
        integrator.json(&["subscriptions", "create", "--endpoint", &endpoint_id, "--type", "order.shipped"]).await;
    assert_eq!(subscription["eventTypes"], json!(["order.shipped"]));

    let published = admin
        .json(&["events", "publish", "--tenant", "acme", "--type", "order.shipped", "--data", r#"{"orderId":"o-1"}"#])
        .await;
    assert_eq!(published["deliveries"], 1, "{published}");
    let event_id = text(&published, "id");

    let block = read_until(&mut lines, |line| line.starts_with("signature ")).await;
    assert!(block.contains("POST /hook"), "{block}");
    assert!(block.contains(&format!("webhook-id: {event_id}")), "{block}");
    assert!(block.contains("\"orderId\": \"o-1\""), "{block}");
    assert!(block.contains("signature valid\n"), "{block}");

    // Follow it to the end, then see it in the history, the table and the tail.
    let mut delivered = Value::Null;
    for _ in 0..100 {
        let list = integrator.json(&["deliveries", "list", "--endpoint", &endpoint_id]).await;
        if list[0]["status"] == "delivered" {
            delivered = list[0].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(delivered["eventId"], event_id.as_str(), "{delivered}");
    let table = integrator.run(&["endpoints", "list"]).await;
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.contains("ID") && table.stdout.contains(&endpoint_id), "{}", table.stdout);
    let tail = integrator.run(&["deliveries", "tail", "--since", "10m", "--count", "1", "--interval", "0.2"]).await;
    assert_eq!(tail.code, 0, "{}", tail.stderr);
    assert!(tail.stdout.contains("delivered") && tail.stdout.contains(&event_id), "{}", tail.stdout);

    listen.kill().await.unwrap();
    stack.stop().await;
}

/// Publishes an `order.paid` of `amount` to `acme`; answers its deliveries.
async fn publish_paid(admin: &Herald, amount: u32) -> u64 {
    let data = format!(r#"{{"amount":{amount}}}"#);
    let published =
        admin.json(&["events", "publish", "--tenant", "acme", "--type", "order.paid", "--data", &data]).await;
    published["deliveries"].as_u64().unwrap()
}

/// `--retry-schedule`/`--max-attempts` set an endpoint's `retry` (on
/// update, one of them keeps the policy's other part), and `subscriptions
/// update` changes what a subscription routes, which the next event follows.
#[tokio::test]
async fn retry_policies_and_subscription_updates() {
    let stack = Stack::start().await;
    let admin = Herald::new(&stack, ADMIN_TOKEN);
    let integrator = admin.with_token(&tenant_and_type(&admin).await);
    admin.json(&["event-types", "create", "--name", "order.paid"]).await;
    let receiver = Receiver::start().await;
    let url = receiver.url();
    let args = ["endpoints", "create", "--url", &url, "--retry-schedule", "1s,5s", "--max-attempts", "3"];
    let ep = integrator.json(&args).await;
    assert_eq!(ep["retry"], json!({"schedule": ["1s", "5s"], "maxAttempts": 3}), "{ep}");
    let id = text(&ep, "id");
    let ep = integrator.json(&["endpoints", "update", &id, "--max-attempts", "1"]).await;
    assert_eq!(ep["retry"], json!({"schedule": ["1s", "5s"], "maxAttempts": 1}), "{ep}");
    let ep = integrator.json(&["endpoints", "update", &id, "--retry-schedule", "2s"]).await;
    assert_eq!(ep["retry"], json!({"schedule": ["2s"], "maxAttempts": 1}), "{ep}");
    let refused = integrator.run(&["endpoints", "update", &id, "--retry-schedule", "5s,soon"]).await;
    assert!(refused.code == 1 && refused.stderr.contains("retry.schedule[1]"), "{}", refused.stderr);
    let usage = integrator.run(&["endpoints", "update", &id, "--retry-schedule", "5s,,1m"]).await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);

    let sub = integrator.json(&["subscriptions", "create", "--endpoint", &id, "--type", "order.shipped"]).await;
    let sub_id = text(&sub, "id");
    let filter = r#"{"data.amount":{"$gte":100}}"#;
    let sub =
        integrator.json(&["subscriptions", "update", &sub_id, "--event-type", "order.paid", "--filter", filter]).await;
    assert_eq!((&sub["eventTypes"], &sub["filter"]), (&json!(["order.paid"]), &json!({"data.amount": {"$gte": 100}})));
    assert_eq!(publish_paid(&admin, 50).await, 0);
    assert_eq!(publish_paid(&admin, 150).await, 1);
    assert_eq!(receiver.wait_for(1, WAIT).await[0].json()["data"]["amount"], 150);
    let sub = integrator.json(&["subscriptions", "update", &sub_id, "--filter", "null"]).await;
    assert!(sub["eventTypes"] == json!(["order.paid"]) && sub.get("filter").is_none(), "{sub}");
    assert_eq!(publish_paid(&admin, 50).await, 1);
    let usage = integrator.run(&["subscriptions", "update", &sub_id]).await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    stack.stop().await;
}

#[tokio::test]
async fn verify_accepts_a_real_delivery_and_refuses_a_tampered_one() {
    let stack = Stack::start().await;
    let admin = Herald::new(&stack, ADMIN_TOKEN);
    let key = tenant_and_type(&admin).await;
    let integrator = admin.with_token(&key);
    let receiver = Receiver::start().await;
    let endpoint = integrator.json(&["endpoints", "create", "--url", &receiver.url()]).await;
    let (endpoint_id, secret) = (text(&endpoint, "id"), text(&endpoint, "secret"));
    integrator.json(&["subscriptions", "create", "--endpoint", &endpoint_id, "--type", "*"]).await;
    let data = r#"{"orderId":"o-2"}"#;
    let publish = ["events", "publish", "--tenant", "acme", "--type", "order.shipped", "--data", "-"];
    let ran = admin.run_stdin(&publish, data.as_bytes()).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout.contains("1 deliveries"), "{}", ran.stdout);

    let got = receiver.wait_for(1, WAIT).await;
    let delivery = &got[0];
    let header = |name: &str| delivery.header(name).unwrap().to_owned();
    let (id, timestamp, signature) = (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
    let verify = |secret: &str, timestamp: &str| {
        ["verify", "--secret", secret, "--id", &id, "--timestamp", timestamp, "--signature", &signature]
            .map(str::to_owned)
    };
    let args = verify(&secret, &timestamp);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ok = admin.run_stdin(&args, &delivery.body).await;
    assert_eq!((ok.code, ok.stdout.trim()), (0, "signature valid"), "{}", ok.stderr);

    let mut tampered = delivery.body.to_vec();
    tampered.extend_from_slice(b" ");
    let refused = admin.run_stdin(&args, &tampered).await;
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("signature INVALID: no matching signature"), "{}", refused.stderr);

    let other = verify("whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ=", &timestamp);
    let other: Vec<&str> = other.iter().map(String::as_str).collect();
    let wrong_secret = admin.run_stdin(&other, &delivery.body).await;
    assert_eq!(wrong_secret.code, 1, "{}", wrong_secret.stderr);
    assert!(wrong_secret.stderr.contains("no matching signature"), "{}", wrong_secret.stderr);

    let stale = (timestamp.parse::<i64>().unwrap() - 600).to_string();
    let stale = verify(&secret, &stale);
    let stale: Vec<&str> = stale.iter().map(String::as_str).collect();
    let late = admin.run_stdin(&stale, &delivery.body).await;
    assert_eq!(late.code, 1);
    assert!(late.stderr.contains("outside the 5-minute tolerance"), "{}", late.stderr);

    let malformed = verify("whsec_not base64!", &timestamp);
    let malformed: Vec<&str> = malformed.iter().map(String::as_str).collect();
    let bad = admin.run_stdin(&malformed, &delivery.body).await;
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("malformed secret"), "{}", bad.stderr);
    stack.stop().await;
}

#[tokio::test]
async fn recover_follows_the_re_sent_deliveries_until_none_is_pending() {
    let stack = Stack::start().await;
    let admin = Herald::new(&stack, ADMIN_TOKEN);
    let key = tenant_and_type(&admin).await;
    let integrator = admin.with_token(&key);
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let endpoint = integrator.json(&["endpoints", "create", "--url", &receiver.url()]).await;
    let endpoint_id = text(&endpoint, "id");
    integrator.json(&["subscriptions", "create", "--endpoint", &endpoint_id, "--type", "order.shipped"]).await;
    for n in 0..2 {
        let data = format!(r#"{{"orderId":"o-{n}"}}"#);
        admin.json(&["events", "publish", "--tenant", "acme", "--type", "order.shipped", "--data", &data]).await;
    }
    // One attempt and three retries each (the test schedule is 200ms, 400ms, 800ms).
    let mut failed = Vec::new();
    for _ in 0..150 {
        failed = integrator
            .json(&["deliveries", "list", "--endpoint", &endpoint_id, "--status", "failed"])
            .await
            .as_array()
            .cloned()
            .unwrap_or_default();
        if failed.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(failed.len(), 2, "{failed:?}");

    receiver.respond_with(204);
    let ran = integrator.run(&["endpoints", "recover", &endpoint_id, "--since", "1h", "--wait-timeout", "30s"]).await;
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("2 failed deliveries"), "{}", ran.stdout);
    // recover returned once none was pending: both were attempted again.
    let list = integrator.json(&["deliveries", "list", "--endpoint", &endpoint_id]).await;
    let list = list.as_array().unwrap();
    assert!(list.iter().all(|d| d["status"] != "pending"), "{list:?}");
    assert!(receiver.count() >= 10, "{} requests", receiver.count());
    stack.stop().await;
}

#[tokio::test]
async fn exit_statuses_tell_refusals_from_usage_errors_and_an_absent_gateway() {
    let stack = Stack::start().await;
    let admin = Herald::new(&stack, ADMIN_TOKEN);

    let refused = admin.run(&["tenants", "get", "nobody"]).await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("not found (404)"), "{}", refused.stderr);
    let invalid = admin.run(&["tenants", "create", "--id", "has space", "--name", "x"]).await;
    assert_eq!(invalid.code, 1, "{}", invalid.stderr);
    assert!(invalid.stderr.contains("(400)"), "{}", invalid.stderr);
    let replay = admin.run(&["endpoints", "replay", "ep_1", "--since", "1h", "--tenant", "acme"]).await;
    assert_eq!(replay.code, 1, "{}", replay.stderr);
    assert!(replay.stderr.contains("(404)"), "{}", replay.stderr);

    let usage = admin.run(&["endpoints", "frobnicate"]).await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    let bad_json = admin.run(&["events", "publish", "--tenant", "acme", "--type", "t", "--data", "{"]).await;
    assert_eq!(bad_json.code, 2, "{}", bad_json.stderr);
    assert!(bad_json.stderr.contains("--data is not valid JSON"), "{}", bad_json.stderr);

    let nowhere = Herald { url: format!("http://127.0.0.1:{}", herald_tests::free_port()), ..admin.with_token("x") };
    let down = nowhere.run(&["tenants", "list"]).await;
    assert_eq!(down.code, 3, "{}", down.stderr);
    assert!(down.stderr.contains("cannot reach the gateway"), "{}", down.stderr);

    // A saved profile is used when neither flag nor environment says otherwise.
    let login = admin.run(&["login"]).await;
    assert_eq!(login.code, 0, "{}", login.stderr);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&admin.config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let mut from_profile = admin.command(&["tenants", "list", "--output", "json"]);
    from_profile.env_remove("HERALD_URL").env_remove("HERALD_TOKEN");
    let listed = admin.run_with(from_profile, None).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(serde_json::from_str::<Value>(&listed.stdout).unwrap(), json!([]));

    let completions = admin.run(&["completions", "bash"]).await;
    assert!(completions.code == 0 && completions.stdout.contains("herald"), "{}", completions.stderr);
    let man = admin.run(&["man"]).await;
    assert!(man.code == 0 && man.stdout.contains(".TH"), "{}", man.stderr);
    let _ = std::fs::remove_dir_all(admin.config.parent().unwrap());
    stack.stop().await;
}
