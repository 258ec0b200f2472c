//! A real Kafka-compatible broker for the tests (`tansu`, installed by the
//! setup command) on a free loopback port, and a client to produce input
//! and read output as a downstream reader would.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::wait_until;

/// A `tansu` broker, its data in memory. Killed when dropped.
///
/// (tansu can also keep its data in S3, to survive a restart; with 0.6.0
/// that mode answers fetches and offset listings wrongly, so the tests
/// simulate an outage by freezing the broker instead: [`pause`](Self::pause).)
pub struct Broker {
    child: Option<Child>,
    port: u16,
    storage: String,
    authentication: bool,
}

impl Broker {
    /// A broker keeping everything in memory.
    pub fn start() -> Self {
        Self::launch("memory://tansu/".into())
    }

    /// A broker that requires SASL authentication (and knows no users).
    pub fn start_with_authentication() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut broker = Self { child: None, port, storage: "memory://tansu/".into(), authentication: true };
        broker.spawn();
        broker
    }

    fn launch(storage: String) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut broker = Self { child: None, port, storage, authentication: false };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let bin = find_tansu();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &self.storage])
            .args(self.authentication.then_some("--authentication"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        self.child = Some(child);
        let port = self.port;
        wait_until("tansu to accept connections", Duration::from_secs(30), || {
            let child = self.child.as_mut().expect("just spawned");
            assert!(child.try_wait().expect("polling tansu").is_none(), "tansu exited at start-up");
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Kills the broker.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing is
    /// answered, as in a network partition.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws it (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    /// `127.0.0.1:PORT`, for `brokers = …`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(find_tansu())
            .args(["topic", "create", topic, "--partitions", &partitions.to_string()])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .output()
            .expect("running tansu topic create");
        assert!(out.status.success(), "tansu topic create {topic}: {}", String::from_utf8_lossy(&out.stderr));
        let consumer = self.consumer(None);
        wait_until(&format!("topic {topic} in the metadata"), Duration::from_secs(10), || {
            consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).is_ok_and(|m| {
                m.topics().iter().any(|t| t.name() == topic && t.partitions().len() == partitions as usize)
            })
        });
    }

    /// Client settings for this broker.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.brokers()).set("log_level", "3");
        config
    }

    /// A producer (idempotent; transactional with `transactional_id`).
    pub fn producer(&self, transactional_id: Option<&str>) -> BaseProducer {
        let mut config = self.config();
        config.set("enable.idempotence", "true").set("linger.ms", "5");
        if let Some(id) = transactional_id {
            config.set("transactional.id", id);
        }
        let producer: BaseProducer = config.create().expect("a producer");
        if transactional_id.is_some() {
            producer.init_transactions(Duration::from_secs(30)).expect("init_transactions");
        }
        producer
    }

    /// A `read_committed` consumer (in group `group`, if any).
    pub fn consumer(&self, group: Option<&str>) -> BaseConsumer {
        let mut config = self.config();
        config
            .set("group.id", group.unwrap_or("weir-tests-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest");
        config.create().expect("a consumer")
    }

    /// Writes `lines` as records (no key) round-robin over `partitions`, and flushes.
    ///
    /// One record per batch: tansu 0.6.0 answers ListOffsets(latest) with
    /// the base offset of the partition's last batch + 1, which is the end
    /// offset only when that batch holds one record (a source's `stop =
    /// "latest"` reads that answer).
    pub fn produce_lines(&self, topic: &str, partitions: i32, lines: &[&str]) {
        let mut config = self.config();
        config.set("enable.idempotence", "true").set("batch.num.messages", "1");
        let producer: BaseProducer = config.create().expect("a producer");
        for (i, line) in lines.iter().enumerate() {
            send(&producer, BaseRecord::<(), str>::to(topic).payload(*line).partition(i as i32 % partitions));
        }
        producer.flush(Duration::from_secs(30)).expect("flushing the test input");
    }

    /// Every value of `topic`, all partitions together, as any reader sees
    /// them (`read_uncommitted`). Weir's Kafka sink is not transactional,
    /// so `read_committed` should show the same; but once, under load, a
    /// `read_committed` reader of tansu 0.6.0 missed a partition's first
    /// records after runs were killed (tansu computes its last stable
    /// offset from producer state), and that was not pinned down.
    pub fn values(&self, topic: &str) -> Vec<String> {
        let mut config = self.config();
        config
            .set("group.id", "weir-tests-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_uncommitted");
        let reader: BaseConsumer = config.create().expect("a consumer");
        let metadata = reader.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
        let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Offset(0)).expect("assignment");
        }
        reader.assign(&tpl).expect("assign");
        let mut out = Vec::new();
        let mut at_end = std::collections::BTreeSet::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while at_end.len() < partitions.len() {
            assert!(std::time::Instant::now() < deadline, "reading {topic}: no end after 60 s");
            match reader.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()),
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends one record, waiting while the producer's queue is full.
pub fn send<K: rdkafka::message::ToBytes + ?Sized, P: rdkafka::message::ToBytes + ?Sized>(
    producer: &BaseProducer,
    mut record: BaseRecord<'_, K, P>,
) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => panic!("producing: {e}"),
        }
    }
}

/// `tansu` on `PATH` or in cargo's bin directory (where the setup command installs it).
fn find_tansu() -> PathBuf {
    crate::find_tool("tansu", "cargo install tansu@0.6.0 --locked --features dynostore")
}
