//! Kafka in and out, against a real broker (`tansu`, started on loopback).
//!
//! First the broker itself, for exactly what the exactly-once sink relies
//! on; then the real `weir` binary with Kafka sources and sinks.

use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use weir_tests::kafka::{Broker, send};

use crate::Background;
use crate::faults::{savepoint, start, wait_until_or_exit};

const T: Duration = Duration::from_secs(30);

/// What the exactly-once sink relies on: record headers survive the
/// broker, and a reader assigned to every partition gets an end-of-partition
/// event for each — empty partitions too — once it has read everything.
/// (What the tests' broker lacks is in the README: tansu 0.6.0 routes no
/// `EndTxn`, so Kafka transactions cannot commit or abort.)
#[test]
fn broker_keeps_headers_and_signals_partition_ends() {
    let broker = Broker::start();
    broker.create_topic("h", 3);
    let producer = broker.producer(None);
    for i in 0..50 {
        let seq = format!("7:{i}");
        let headers = OwnedHeaders::new()
            .insert(Header { key: "weir-writer", value: Some("w-0") })
            .insert(Header { key: "weir-seq", value: Some(&seq) });
        send(&producer, BaseRecord::<str, str>::to("h").key("k").payload("v").partition(i % 2).headers(headers));
    }
    producer.flush(T).unwrap();
    let consumer = broker.consumer(None);
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset("h", p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let (mut seqs, mut ends) = (Vec::new(), std::collections::BTreeSet::new());
    weir_tests::wait_until("every partition's end", T, || {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let headers = m.headers().expect("headers kept");
                let h: Vec<(String, String)> = headers
                    .iter()
                    .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                    .collect();
                assert_eq!(h[0], ("weir-writer".into(), "w-0".into()));
                seqs.push(h[1].1.clone());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                ends.insert(p);
            }
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
        ends.len() == 3
    });
    seqs.sort_by_key(|s| s[2..].parse::<u32>().unwrap());
    assert_eq!(seqs, (0..50).map(|i| format!("7:{i}")).collect::<Vec<_>>());
}

/// Plain consumer-group offset commits (the source's monitoring commits).
#[test]
fn broker_group_offset_commits() {
    let broker = Broker::start();
    broker.create_topic("g", 2);
    broker.produce_lines("g", 2, &["a", "b", "c"]);
    let consumer = broker.consumer(Some("g-group"));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("g", 0, Offset::Offset(2)).unwrap();
    tpl.add_partition_offset("g", 1, Offset::Offset(1)).unwrap();
    consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync).expect("OffsetCommit");
    let mut ask = TopicPartitionList::new();
    ask.add_partition("g", 0);
    ask.add_partition("g", 1);
    let got = broker.consumer(Some("g-group")).committed_offsets(ask, T).unwrap();
    assert_eq!(got.find_partition("g", 0).unwrap().offset(), Offset::Offset(2));
    assert_eq!(got.find_partition("g", 1).unwrap().offset(), Offset::Offset(1));
}

/// Kafka topic `words` (`partitions` partitions, read to its end) →
/// `tokenize` ×2 → keyed `count` ×2 → Kafka topic `counts` ×2, job `kw`,
/// plus `tail` (e.g. `[checkpoint]`).
fn kafka_wordcount(brokers: &str, tail: &str) -> String {
    paced_kafka_wordcount(brokers, 0, tail)
}

/// As [`kafka_wordcount`], reading at most `rate` lines/s (0: unlimited).
fn paced_kafka_wordcount(brokers: &str, rate: u32, tail: &str) -> String {
    let rate = if rate == 0 { String::new() } else { format!("rate = {rate}") };
    format!(
        r#"
[job]
name = "kw"

[sources.words]
kind = "kafka"
brokers = "{brokers}"
topic = "words"
stop = "latest"
parallelism = 2
{rate}

[operators.tokenize]
builtin = "tokenize"
input = "words"
parallelism = 2

[operators.count]
builtin = "count"
input = "tokenize"
partition = "key"
parallelism = 2

[sinks.out]
kind = "kafka"
brokers = "{brokers}"
topic = "counts"
input = "count"
parallelism = 2

{tail}
"#
    )
}

/// A broker with topic `words` (4 partitions) holding `lines` lines of
/// seeded text, and an empty topic `counts` (3 partitions); the text.
fn broker_with_words(lines: usize, seed: u64) -> (Broker, String) {
    let broker = Broker::start();
    broker.create_topic("words", 4);
    broker.create_topic("counts", 3);
    let text = weir_tests::text(lines, seed);
    let lines: Vec<&str> = text.lines().collect();
    broker.produce_lines("words", 4, &lines);
    (broker, text)
}

/// The committed output of topic `counts` is exactly-once for `text`.
#[track_caller]
fn assert_topic_exact(broker: &Broker, text: &str) {
    weir_tests::assert_exact(&weir_tests::counts_by_word(&broker.values("counts")), &weir_tests::expected_counts(text));
}

#[test]
fn a_bounded_topic_is_counted_exactly_into_a_topic() {
    let (broker, text) = broker_with_words(2_000, 1);
    let dir = tempfile::tempdir().unwrap();
    crate::write(dir.path(), "job.toml", &kafka_wordcount(&broker.brokers(), "[checkpoint]\ninterval = \"100ms\"\n"));
    let run = crate::weir(dir.path(), &["run", "job.toml"]);
    eprintln!("{}", run.stderr);
    run.expect_code(0);
    assert_topic_exact(&broker, &text);
}

/// Reruns the job in `dir` with SIGKILL at seeded random moments (up to
/// `kills` times) until one run finishes; returns how many were killed.
fn kill_and_rerun(dir: &std::path::Path, kills: u32, env: &[(&str, &str)]) -> u32 {
    let mut rng = weir_tests::Rng::from_env_or_time();
    let mut killed = 0;
    for round in 0..kills {
        let mut run = Background::start(dir, &format!("run{round}"), &["run", "job.toml", "--no-api"], env);
        if wait_until_or_exit(&mut run, 150 + rng.below(700)) {
            run.finish().expect_code(0);
            return killed;
        }
        run.kill();
        killed += 1;
    }
    crate::weir_env(dir, &["run", "job.toml", "--no-api", "--quiet"], env).expect_code(0);
    killed
}

/// SIGKILL five times at seeded random moments (`WEIR_TEST_SEED` replays),
/// rerun until the bounded topic is read: a reader sees
/// each word's counts exactly 1..N.
#[test]
fn kills_at_random_moments_are_exactly_once_through_kafka() {
    let (broker, text) = broker_with_words(20_000, 2);
    let dir = tempfile::tempdir().unwrap();
    let job = paced_kafka_wordcount(&broker.brokers(), 5_000, "[checkpoint]\ninterval = \"100ms\"\n");
    crate::write(dir.path(), "job.toml", &job);
    let killed = kill_and_rerun(dir.path(), 5, &[]);
    assert!(killed >= 2, "the job finished after only {killed} kills: make the input larger");
    assert_topic_exact(&broker, &text);
}

/// The broker freezes (SIGSTOP: a network partition, as its clients see
/// it) while the job runs, long enough for a publish to time out; the job
/// fails over, and once the broker is back the restore publishes what the
/// failed publish left out. The output is still exact.
#[test]
fn a_broker_outage_mid_run_fails_over_and_stays_exact() {
    let (broker, text) = broker_with_words(15_000, 3);
    let dir = tempfile::tempdir().unwrap();
    let tail = "[checkpoint]\ninterval = \"100ms\"\n[restart]\nattempts = 20\ndelay = \"500ms\"\n";
    let job = paced_kafka_wordcount(&broker.brokers(), 2_000, tail)
        .replace("topic = \"counts\"", "topic = \"counts\"\ntimeout = \"2s\"");
    crate::write(dir.path(), "job.toml", &job);
    let mut run = Background::start(dir.path(), "run", &["run", "job.toml", "--no-api"], &[]);
    // At a seeded random moment while records flow (the run takes ~7 s).
    let mut rng = weir_tests::Rng::from_env_or_time();
    assert!(!wait_until_or_exit(&mut run, 1_500 + rng.below(3_000)), "the job ended before the outage");
    broker.pause();
    let log = || std::fs::read_to_string(dir.path().join("run.stderr")).unwrap_or_default();
    weir_tests::wait_until("the job to fail over", crate::TIMEOUT, || log().contains("restarting") || run.exited());
    broker.resume();
    assert!(log().contains("restarting"), "the job did not fail over:\n{}", log());
    weir_tests::wait_until("the job to finish", Duration::from_secs(300), || run.exited());
    run.finish().expect_code(0);
    assert_topic_exact(&broker, &text);
}

/// Stop with a savepoint mid-run, then resume with every Kafka node and
/// the counter at another parallelism (source 2 → 3, count 2 → 3, sink
/// 2 → 1): partitions and unpublished output move with the state; exact.
#[test]
fn a_savepoint_resumes_rescaled_with_kafka_in_and_out() {
    let (broker, text) = broker_with_words(15_000, 4);
    let dir = tempfile::tempdir().unwrap();
    let job = paced_kafka_wordcount(&broker.brokers(), 2_000, "[checkpoint]\ninterval = \"100ms\"\n");
    crate::write(dir.path(), "job.toml", &job);
    let (mut run, addr) = start(dir.path(), "first", &[]);
    let mut rng = weir_tests::Rng::from_env_or_time();
    assert!(!wait_until_or_exit(&mut run, 1_000 + rng.below(3_000)), "the job ended before the savepoint");
    let saved = savepoint(dir.path(), &addr, true, "sp");
    run.finish().expect_code(0);
    let inspected = crate::weir(dir.path(), &["inspect", &saved.to_string_lossy()]);
    inspected.expect_code(0);
    assert!(inspected.stdout.contains("next offsets words/"), "{}", inspected.stdout);
    // The savepoint's last segment is published after the savepoint completes; its state cannot know.
    let sink = ["published unless Kafka has them", "nothing to publish"];
    assert!(sink.iter().any(|s| inspected.stdout.contains(s)), "{}", inspected.stdout);
    let rescaled = job
        .replacen("parallelism = 2", "parallelism = 3", 1) // the source
        .replace("partition = \"key\"\nparallelism = 2", "partition = \"key\"\nparallelism = 3")
        .replace("input = \"count\"\nparallelism = 2", "input = \"count\"\nparallelism = 1");
    assert_eq!(rescaled.matches("parallelism = 3").count(), 2, "{rescaled}");
    crate::write(dir.path(), "job.toml", &rescaled);
    let saved = saved.to_string_lossy().into_owned();
    crate::run_job(dir.path(), "job.toml", &["--from-savepoint", &saved]).expect_code(0);
    assert_topic_exact(&broker, &text);
}

/// At-least-once: killed runs may repeat records written after the last
/// completed checkpoint, but never lose one: each word's counts cover 1..N.
#[test]
fn at_least_once_repeats_but_never_loses() {
    let (broker, text) = broker_with_words(15_000, 5);
    let dir = tempfile::tempdir().unwrap();
    let job = paced_kafka_wordcount(&broker.brokers(), 4_000, "[checkpoint]\ninterval = \"100ms\"\n")
        .replace("topic = \"counts\"", "topic = \"counts\"\ndelivery = \"at-least-once\"");
    crate::write(dir.path(), "job.toml", &job);
    let killed = kill_and_rerun(dir.path(), 3, &[]);
    assert!(killed >= 1, "the job was never killed");
    let got = weir_tests::counts_by_word(&broker.values("counts"));
    let expected = weir_tests::expected_counts(&text);
    for (word, n) in &expected {
        let seen: std::collections::BTreeSet<u64> = got.get(word).into_iter().flatten().copied().collect();
        assert!(seen.iter().copied().eq(1..=*n), "{word}: counts {seen:?}, expected 1..={n}");
    }
}

/// One source and sink job against `brokers` with `source` and `sink`
/// lines added to their tables; runs it and returns the run and its time.
fn run_bad(source: &str, sink: &str, brokers: &str) -> (weir_tests::Run, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let job = format!(
        "[sources.in]\nkind = \"kafka\"\nbrokers = \"{brokers}\"\n{source}\n\
         [sinks.out]\nkind = \"kafka\"\nbrokers = \"{brokers}\"\ninput = \"in\"\n{sink}\n\
         [checkpoint]\ninterval = \"1s\"\n"
    );
    crate::write(dir.path(), "job.toml", &job);
    let started = std::time::Instant::now();
    let run = crate::run_job(dir.path(), "job.toml", &[]);
    (run, started.elapsed())
}

#[test]
fn unreachable_brokers_fail_clearly_in_bounded_time() {
    let (run, took) = run_bad("topic = \"t\"\ntimeout = \"2s\"", "topic = \"t\"\ntimeout = \"2s\"", "127.0.0.1:1");
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("cannot reach the Kafka brokers 127.0.0.1:1 within 2s"), "{}", run.stderr);
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn missing_topics_and_empty_patterns_are_bad_input() {
    let broker = Broker::start();
    broker.create_topic("there", 1);
    let (run, _) = run_bad("topic = \"nope\"", "topic = \"there\"", &broker.brokers());
    run.expect_code(2);
    assert!(run.stderr.contains("Kafka topic `nope` does not exist"), "{}", run.stderr);
    let (run, _) = run_bad("topic_pattern = \"zz-.*\"", "topic = \"there\"", &broker.brokers());
    run.expect_code(2);
    assert!(run.stderr.contains("no Kafka topic"), "{}", run.stderr);
    assert!(run.stderr.contains("zz-.*"), "{}", run.stderr);
    let (run, _) = run_bad("topic = \"there\"\nstop = \"latest\"", "topic = \"gone\"", &broker.brokers());
    run.expect_code(2);
    assert!(run.stderr.contains("Kafka topic `gone` does not exist"), "{}", run.stderr);
}

#[test]
fn bad_client_properties_name_the_node() {
    let (run, _) = run_bad(
        "topic = \"t\"\nproperties = { \"security.protocol\" = \"carrier-pigeon\" }",
        "topic = \"t\"",
        "127.0.0.1:1",
    );
    run.expect_code(2);
    assert!(run.stderr.contains("`in`") && run.stderr.contains("security.protocol"), "{}", run.stderr);
}

/// `weir validate` plans without touching Kafka; `--connect` reaches the
/// brokers and checks the topics, failing as a run would.
#[test]
fn validate_connects_only_when_asked() {
    let broker = Broker::start();
    broker.create_topic("words", 4);
    broker.create_topic("counts", 3);
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = "[checkpoint]\ninterval = \"1s\"\n";
    crate::write(dir.path(), "job.toml", &kafka_wordcount(&broker.brokers(), checkpoints));
    let plain = crate::weir(dir.path(), &["validate", "job.toml"]);
    plain.expect_code(0);
    assert!(!plain.stdout.contains("connected"), "{}", plain.stdout);
    let connected = crate::weir(dir.path(), &["validate", "job.toml", "--connect"]);
    connected.expect_code(0);
    assert!(connected.stdout.contains("words: connected to") && connected.stdout.contains("words (4 partitions)"));
    assert!(connected.stdout.contains("writes counts (3 partitions)"), "{}", connected.stdout);
    let missing = kafka_wordcount(&broker.brokers(), checkpoints).replace("topic = \"counts\"", "topic = \"nowhere\"");
    crate::write(dir.path(), "job.toml", &missing);
    crate::weir(dir.path(), &["validate", "job.toml"]).expect_code(0);
    let refused = crate::weir(dir.path(), &["validate", "job.toml", "--connect"]);
    refused.expect_code(2);
    assert!(refused.stderr.contains("Kafka topic `nowhere` does not exist"), "{}", refused.stderr);
}

/// A `topic_pattern` source picks up a matching topic created while it
/// runs, reading it from its earliest record; other topics are left alone.
#[test]
fn a_topic_pattern_picks_up_new_topics() {
    let broker = Broker::start();
    broker.create_topic("ev-1", 2);
    broker.create_topic("other", 1);
    broker.produce_lines("ev-1", 2, &["one", "two"]);
    broker.produce_lines("other", 1, &["not-me"]);
    let dir = tempfile::tempdir().unwrap();
    let job = format!(
        "[sources.in]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopic_pattern = \"ev-.*\"\npartition_discovery = \"300ms\"\n\
         [sinks.out]\nkind = \"file\"\npath = \"out\"\ninput = \"in\"\n\
         [checkpoint]\ninterval = \"100ms\"\n",
        broker.brokers()
    );
    crate::write(dir.path(), "job.toml", &job);
    let mut run = Background::start(dir.path(), "run", &["run", "job.toml", "--no-api"], &[]);
    let out = dir.path().join("out");
    let committed = || if out.is_dir() { weir_tests::committed_lines(&out) } else { Vec::new() };
    weir_tests::wait_until("ev-1's records", crate::TIMEOUT, || committed().len() >= 2 || run.exited());
    broker.create_topic("ev-2", 1);
    broker.produce_lines("ev-2", 1, &["three"]);
    weir_tests::wait_until("ev-2's record", crate::TIMEOUT, || committed().len() >= 3 || run.exited());
    assert!(!run.exited(), "the job ended: {}", std::fs::read_to_string(dir.path().join("run.stderr")).unwrap());
    let mut got = committed();
    got.sort();
    assert_eq!(got, ["one", "three", "two"]);
    // Completed checkpoints' offsets reach the consumer group (for monitoring).
    let group = broker.consumer(Some("weir-job-in"));
    weir_tests::wait_until("offsets committed to the group", crate::TIMEOUT, || {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in [("ev-1", 0), ("ev-1", 1), ("ev-2", 0)] {
            tpl.add_partition(t, p);
        }
        let committed = group.committed_offsets(tpl, T).expect("OffsetFetch");
        let sum: i64 =
            committed.elements().iter().map(|e| if let Offset::Offset(o) = e.offset() { o } else { 0 }).sum();
        sum == 3
    });
}

/// Without `[checkpoint]` an exactly-once Kafka sink would hold all its
/// output in memory until the end: refused, saying what to do.
#[test]
fn an_exactly_once_kafka_sink_needs_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    crate::write(dir.path(), "job.toml", &kafka_wordcount("127.0.0.1:1", ""));
    let run = crate::weir(dir.path(), &["validate", "job.toml"]);
    run.expect_code(2);
    assert!(run.stderr.contains("[sinks.out]") && run.stderr.contains("add a [checkpoint] section"), "{}", run.stderr);
    let at_least_once = kafka_wordcount("127.0.0.1:1", "")
        .replace("topic = \"counts\"", "topic = \"counts\"\ndelivery = \"at-least-once\"");
    crate::write(dir.path(), "job.toml", &at_least_once);
    crate::weir(dir.path(), &["validate", "job.toml"]).expect_code(0);
}

/// A broker that requires SASL refuses a wrong password: bad input (exit
/// 2, not retried), said as such — not as an unreachable broker.
#[test]
fn refused_credentials_are_bad_input() {
    let broker = Broker::start_with_authentication();
    let login = "properties = { \"security.protocol\" = \"SASL_PLAINTEXT\", \"sasl.mechanism\" = \"SCRAM-SHA-256\", \
                 \"sasl.username\" = \"weir\", \"sasl.password\" = \"wrong\" }";
    let (run, took) = run_bad(
        &format!("topic = \"t\"\ntimeout = \"3s\"\n{login}"),
        &format!("topic = \"t\"\ntimeout = \"3s\"\n{login}"),
        &broker.brokers(),
    );
    run.expect_code(2);
    assert!(run.stderr.contains("refused the credentials"), "{}", run.stderr);
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

/// A bounded read of two topics whose partitions share numbers: the end of
/// one topic's partition 0 must not end the other's (an end-of-partition
/// event names no topic). Every record of both is read.
#[test]
fn a_bounded_read_of_several_topics_reads_them_all() {
    let broker = Broker::start();
    broker.create_topic("small", 1);
    broker.create_topic("big", 1);
    broker.produce_lines("small", 1, &["s1", "s2"]);
    let big: Vec<String> = (0..1_000).map(|i| format!("b{i}")).collect();
    broker.produce_lines("big", 1, &big.iter().map(String::as_str).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let job = format!(
        "[sources.in]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopic = [\"small\", \"big\"]\nstop = \"latest\"\n\
         rate = 500\n\
         [sinks.out]\nkind = \"file\"\npath = \"out\"\ninput = \"in\"\n",
        broker.brokers()
    );
    crate::write(dir.path(), "job.toml", &job);
    crate::run_job(dir.path(), "job.toml", &[]).expect_code(0);
    // Paced, so that `small` ends long before `big` does.
    assert_eq!(weir_tests::committed_lines(&dir.path().join("out")).len(), 1_002);
}

/// A record larger than the producer takes fails the job when written, as
/// bad input — not after its checkpoint completed, when every restore would
/// retry it.
#[test]
fn a_record_kafka_would_refuse_fails_before_it_is_sealed() {
    let broker = Broker::start();
    broker.create_topic("t", 1);
    let dir = tempfile::tempdir().unwrap();
    crate::write(dir.path(), "in.txt", &format!("short\n{}\n", "x".repeat(5_000)));
    let job = format!(
        "[sources.in]\nkind = \"file\"\npath = \"in.txt\"\n\
         [sinks.out]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopic = \"t\"\ninput = \"in\"\n\
         properties = {{ \"message.max.bytes\" = 2000 }}\n[checkpoint]\ninterval = \"1s\"\n",
        broker.brokers()
    );
    crate::write(dir.path(), "job.toml", &job);
    let run = crate::run_job(dir.path(), "job.toml", &[]);
    run.expect_code(2).expect_stderr(&["a record of 5000 bytes", "message.max.bytes"]);
}

/// An idle input stops holding event time back after `idle_timeout`: a
/// topic with two partitions, one of them empty, read by two subtasks —
/// without idleness the empty one's reader would hold every window open
/// forever (the job never ends). With it, windows fire while the job runs.
#[test]
fn an_idle_partition_stops_holding_windows_back() {
    let broker = Broker::start();
    broker.create_topic("clicks", 2);
    let lines: Vec<String> = (0..30).map(|s| format!("{{\"user\":\"ann\",\"ts\":{}}}", s * 1000)).collect();
    // All into partition 0: partition 1 stays empty.
    broker.produce_lines("clicks", 1, &lines.iter().map(String::as_str).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let job = format!(
        r#"
[sources.in]
kind = "kafka"
brokers = "{}"
topic = "clicks"
parallelism = 2
key = {{ json = "user" }}
timestamp = {{ json = "ts" }}
watermark = {{ max_out_of_orderness = "1s", idle_timeout = "500ms" }}

[operators.win]
builtin = "window"
input = "in"
partition = "key"
config = {{ kind = "tumbling", size = "10s" }}

[sinks.out]
kind = "file"
path = "out"
input = "win"

[checkpoint]
interval = "100ms"
"#,
        broker.brokers()
    );
    crate::write(dir.path(), "job.toml", &job);
    let mut run = Background::start(dir.path(), "run", &["run", "job.toml", "--no-api"], &[]);
    let out = dir.path().join("out");
    let committed = || if out.is_dir() { weir_tests::committed_lines(&out) } else { Vec::new() };
    weir_tests::wait_until("two windows", crate::TIMEOUT, || committed().len() >= 2 || run.exited());
    assert!(!run.exited(), "the job ended: {}", std::fs::read_to_string(dir.path().join("run.stderr")).unwrap());
    let mut got = committed();
    got.sort();
    // Up to 29 s read: the watermark is 27.999 s, so [20 s, 30 s) stays open.
    assert_eq!(
        got,
        [r#"{"key":"ann","start":0,"end":10000,"value":10}"#, r#"{"key":"ann","start":10000,"end":20000,"value":10}"#]
    );
}

/// Watermarks are per partition: one reader of two partitions, each in
/// order but read one after the other, loses nothing as late — with one
/// watermark for the reader, the second partition's records would all be
/// behind the first's and dropped to `late`.
#[test]
fn watermarks_follow_each_partition() {
    let broker = Broker::start();
    broker.create_topic("two", 2);
    // Alternating partitions: each gets ann's clicks at 0 s, 1 s, … 59 s.
    let lines: Vec<String> = (0..120).map(|i| format!("{{\"user\":\"ann\",\"ts\":{}}}", (i / 2) * 1000)).collect();
    broker.produce_lines("two", 2, &lines.iter().map(String::as_str).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let job = format!(
        r#"
[job]
batch_size = 16

[sources.in]
kind = "kafka"
brokers = "{}"
topic = "two"
stop = "latest"
key = {{ json = "user" }}
timestamp = {{ json = "ts" }}
watermark = {{ max_out_of_orderness = "0s", interval = "0s" }}

[operators.win]
builtin = "window"
input = "in"
partition = "key"
config = {{ kind = "tumbling", size = "10s" }}

[sinks.out]
kind = "file"
path = "out"
input = "win"

[sinks.late]
kind = "file"
path = "late"
input = "win.late"
"#,
        broker.brokers()
    );
    crate::write(dir.path(), "job.toml", &job);
    crate::weir(dir.path(), &["run", "job.toml", "--no-api"]).expect_code(0);
    assert_eq!(weir_tests::committed_lines(&dir.path().join("late")), Vec::<String>::new(), "nothing is late");
    let mut got = weir_tests::committed_lines(&dir.path().join("out"));
    got.sort();
    let want: Vec<String> = (0..6)
        .map(|w| format!("{{\"key\":\"ann\",\"start\":{},\"end\":{},\"value\":20}}", w * 10_000, (w + 1) * 10_000))
        .collect();
    assert_eq!(got, want);
}

/// Event time survives a kill: a window that fired before the kill does
/// not fire again after it. Two topics feed one window; `quiet` goes idle,
/// so `busy` alone moves event time to 28.999 s and [10 s, 20 s) fires.
/// Killed, and a record at 15 s reaches `quiet`: restored, `quiet` is
/// active again with its old watermark, but the window operator resumes at
/// the checkpoint's watermark — the record is late, as it would have been
/// without the kill, and the window is not reopened and reported twice.
#[test]
fn a_fired_window_stays_fired_across_a_kill() {
    let broker = Broker::start();
    broker.create_topic("busy", 1);
    broker.create_topic("quiet", 1);
    let busy: Vec<String> = (0..31).map(|s| format!("{{\"user\":\"ann\",\"ts\":{}}}", s * 1000)).collect();
    broker.produce_lines("busy", 1, &busy.iter().map(String::as_str).collect::<Vec<_>>());
    broker.produce_lines("quiet", 1, &[r#"{"user":"bob","ts":0}"#]);
    let source = |id: &str, idle: &str| {
        format!(
            "[sources.{id}]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopic = \"{id}\"\nkey = {{ json = \"user\" }}\n\
             timestamp = {{ json = \"ts\" }}\nwatermark = {{ max_out_of_orderness = \"1s\"{idle} }}\n",
            broker.brokers()
        )
    };
    let job = format!(
        "[job]\nname = \"idle\"\n{}{}\n[operators.win]\nbuiltin = \"window\"\ninput = [\"busy\", \"quiet\"]\n\
         partition = \"key\"\nconfig = {{ kind = \"tumbling\", size = \"10s\" }}\n\
         [sinks.out]\nkind = \"file\"\npath = \"out\"\ninput = \"win\"\n\
         [sinks.late]\nkind = \"file\"\npath = \"late\"\ninput = \"win.late\"\n\
         [checkpoint]\ninterval = \"100ms\"\n",
        source("busy", ""),
        source("quiet", ", idle_timeout = \"300ms\"")
    );
    let dir = tempfile::tempdir().unwrap();
    crate::write(dir.path(), "job.toml", &job);
    let mut run = Background::start(dir.path(), "run1", &["run", "job.toml", "--no-api"], &[]);
    let out = dir.path().join("out");
    let committed = |d: &std::path::Path| if d.is_dir() { weir_tests::committed_lines(d) } else { Vec::new() };
    let ann = r#"{"key":"ann","start":10000,"end":20000,"value":10}"#;
    weir_tests::wait_until("[10 s, 20 s) to fire", crate::TIMEOUT, || {
        run.exited() || committed(&out).iter().any(|l| l == ann)
    });
    // A checkpoint after it, so the restore is past the firing.
    let store = dir.path().join("checkpoints/idle");
    let fired_by = weir_tests::complete_checkpoints(&store).last().copied().unwrap_or(0);
    weir_tests::wait_until("a later checkpoint", crate::TIMEOUT, || {
        run.exited() || weir_tests::complete_checkpoints(&store).last().copied().unwrap_or(0) > fired_by
    });
    assert!(!run.exited(), "the job ended: {}", std::fs::read_to_string(dir.path().join("run1.stderr")).unwrap());
    run.kill();
    broker.produce_lines("quiet", 1, &[r#"{"user":"ann","ts":15000}"#]);
    let mut run = Background::start(dir.path(), "run2", &["run", "job.toml", "--no-api"], &[]);
    let late = dir.path().join("late");
    weir_tests::wait_until("the record at 15 s", crate::TIMEOUT, || {
        run.exited()
            || !committed(&late).is_empty()
            || committed(&out).iter().filter(|l| l.contains("\"start\":10000")).count() > 1
    });
    run.kill();
    let windows: Vec<String> = committed(&out).into_iter().filter(|l| l.contains("\"start\":10000")).collect();
    assert_eq!(windows, [ann], "the window fired once, with its own records");
    assert_eq!(committed(&late), [r#"{"user":"ann","ts":15000}"#], "late after the kill as before it");
}
