//! W6: Kafka in and out. A `tansu` broker (installed by the setup command)
//! on loopback, the input loaded into a 4-partition topic, then WordCount
//! from that topic to another one, exactly-once, at parallelism 2 — next
//! to the same job reading the same lines from a file into `discard`, and
//! to the Kafka source and sink alone, so the table says where time goes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::{Bench, RUNS, human, per_sec};

/// Lines loaded into Kafka at scale 1 (one million words).
const LINES: f64 = 125_000.0;

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tansu() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([home.join("bin")])
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file())
}

/// Runs W6 on the first lines of `input`.
pub fn run(b: &mut Bench, input: &Path, scale: f64) {
    let Some(tansu) = tansu() else {
        eprintln!("W6 skipped: tansu not found (the README's setup command installs it)");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let url = format!("tcp://127.0.0.1:{port}");
    let _broker = Broker(
        Command::new(&tansu)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tansu"),
    );
    let up = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(up.elapsed() < Duration::from_secs(30), "tansu did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    for topic in ["words", "counts", "sunk"] {
        let ok = Command::new(&tansu)
            .args(["topic", "create", topic, "--partitions", "4", "--broker", &url])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "creating topic {topic}");
    }
    let brokers = format!("127.0.0.1:{port}");
    let text = std::fs::read_to_string(input).expect("reading the input");
    let lines: Vec<&str> = text.lines().take((LINES * scale) as usize).collect();
    let words: u64 = lines.iter().map(|l| l.split(' ').count() as u64).sum();
    let sample = b.dir.join("w6-lines.txt");
    std::fs::write(&sample, lines.join("\n") + "\n").expect("writing the W6 input");
    let loaded = Instant::now();
    load(&brokers, &lines);
    eprintln!("W6: loaded {} lines into Kafka in {:.1?}", lines.len(), loaded.elapsed());

    let source = |p: u32| {
        format!(
            "[sources.lines]\nkind = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"words\"\nstop = \"latest\"\n\
             parallelism = {p}\n"
        )
    };
    let file =
        |p: u32| format!("[sources.lines]\nkind = \"file\"\npath = \"{}\"\nparallelism = {p}\n", sample.display());
    let count = "[operators.tokenize]\nbuiltin = \"tokenize\"\ninput = \"lines\"\nparallelism = 2\n\
                 [operators.count]\nbuiltin = \"count\"\ninput = \"tokenize\"\npartition = \"key\"\nparallelism = 2\n";
    let sink = |topic: &str, input: &str| {
        format!(
            "[sinks.out]\nkind = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\ninput = \"{input}\"\n\
             parallelism = 2\n"
        )
    };
    let discard = |input: &str| format!("[sinks.out]\nkind = \"discard\"\ninput = \"{input}\"\nparallelism = 2\n");
    let checkpoint = "[checkpoint]\ninterval = \"1s\"\nstore = \"memory://\"\n";
    let full = b.job("w6-kafka.toml", &format!("{}{count}{}{checkpoint}", source(2), sink("counts", "count")));
    let file_w1 = b.job("w6-file.toml", &format!("{}{count}{}{checkpoint}", file(1), discard("count")));
    let source_only = b.job("w6-source.toml", &format!("{}{}{checkpoint}", source(2), discard("lines")));
    let sink_only = b.job("w6-sink.toml", &format!("{}{}{checkpoint}", file(2), sink("sunk", "lines")));
    b.warm(&full);
    let best = |b: &Bench, job: &Path| (0..RUNS.min(3)).map(|_| b.run(job, &[]).wall).min().expect("runs");
    let (t_full, t_file) = (best(b, &full), best(b, &file_w1));
    let (t_source, t_sink) = (best(b, &source_only), best(b, &sink_only));
    let (full_rate, file_rate) = (per_sec(words, t_full), per_sec(words, t_file));
    b.row(
        "W6",
        "Kafka → WordCount p2 → Kafka exactly-once, words/s",
        human(full_rate),
        format!("{} (file → discard)", human(file_rate)),
        format!("{:.2}×", full_rate / file_rate),
    );
    let n = lines.len() as u64;
    b.row("W6", "Kafka source p2 → discard, records/s", human(per_sec(n, t_source)), "-".into(), "-".into());
    b.row("W6", "file p2 → Kafka sink exactly-once p2, records/s", human(per_sec(n, t_sink)), "-".into(), "-".into());
}

/// Loads `lines` into topic `words`, round-robin over its 4 partitions, one
/// record per batch (tansu 0.6 lists a partition's end offset right only
/// when its last batch holds one record; `stop = "latest"` reads it).
fn load(brokers: &str, lines: &[&str]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("batch.num.messages", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("a producer");
    for (i, line) in lines.iter().enumerate() {
        let mut record = BaseRecord::<(), str>::to("words").payload(*line).partition(i as i32 % 4);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(600)).expect("loading the W6 input");
}
