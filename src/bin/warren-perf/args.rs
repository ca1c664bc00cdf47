//! Command-line flags of warren-perf (modelled on RabbitMQ's PerfTest).

use clap::{Parser, ValueEnum};

/// Which AMQP client drives the producers and consumers.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// Hand-written frames over plain sockets, one thread per producer/consumer, batched writes
    /// and reads (the load generator that is not the bottleneck)
    Raw,
    /// The lapin client (tokio), for comparison
    Lapin,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "warren-perf",
    about = "AMQP 0-9-1 load generator in the spirit of RabbitMQ's PerfTest",
    long_about = "AMQP 0-9-1 load generator in the spirit of RabbitMQ's PerfTest.\n\n\
        Each producer and each consumer has its own connection. Latency is measured by \
        writing the send time (ns since the process start) into the first 8 bytes of \
        every body; consumers compute now - sent. One progress line per second, then a \
        summary (and one JSON line with --json)."
)]
pub struct Args {
    /// AMQP URI of the broker
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub uri: String,

    /// AMQP client of the producers and consumers (the topology is declared with lapin either way)
    #[arg(long, value_enum, default_value_t = Client::Raw)]
    pub client: Client,

    /// Raw client: at most N messages per write to the socket (1 = every message written on its
    /// own, as by an application that awaits each publish). Default 256
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: Option<u32>,

    /// Raw client with --rate and --batch N: wait until N messages are due and write them
    /// together, so that every write carries exactly N (the shape of a client that buffers a few
    /// publishes per write, as lapin does at a fixed rate); without it a paced producer writes
    /// each message when it is due
    #[arg(long, requires = "batch")]
    pub paced_batch: bool,

    /// Number of producers (one connection each)
    #[arg(short = 'x', long, default_value_t = 1)]
    pub producers: usize,

    /// Number of consumers (one connection each); consumer i reads queue i % queues
    #[arg(short = 'y', long, default_value_t = 1)]
    pub consumers: usize,

    /// Number of queues, named perf-q-0, perf-q-1, ...
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub queues: u32,

    /// Message body size in bytes (minimum 12: the first 8 bytes hold the send time)
    #[arg(short = 's', long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(12..))]
    pub size: u32,

    /// Total publish rate across all producers in msg/s (0 = unlimited)
    #[arg(short = 'r', long, default_value_t = 0.0)]
    pub rate: f64,

    /// Publisher confirms with at most N unconfirmed messages per producer (0 = off)
    #[arg(short = 'c', long, default_value_t = 0)]
    pub confirm: usize,

    /// Persistent messages (delivery_mode 2), durable queues and exchange
    #[arg(long)]
    pub persistent: bool,

    /// Consume with no-ack (automatic acknowledgement)
    #[arg(short = 'a', long, conflicts_with = "multi_ack")]
    pub autoack: bool,

    /// Manual acks: ack every N deliveries with multiple=true (default: ack each one)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub multi_ack: u32,

    /// basic.qos prefetch count per consumer (0 = unlimited)
    #[arg(short = 'q', long, default_value_t = 0)]
    pub prefetch: u16,

    /// Exchange type: direct, fanout, topic, headers or any custom type name.
    /// Without it, messages go through the default exchange "" to the queue name.
    #[arg(short = 't', long)]
    pub exchange_type: Option<String>,

    /// Exchange name (default perf-x-<type>); implies --exchange-type direct if no type is given
    #[arg(short = 'e', long)]
    pub exchange: Option<String>,

    /// Binding key of every queue (default: the queue's name), e.g. a weight for x-consistent-hash
    #[arg(long)]
    pub binding_key: Option<String>,

    /// Topic scenario: bind queues with N distinct patterns (k.<i>.* / k.<i>.#), spread over the queues
    #[arg(long, default_value_t = 0)]
    pub topic_bindings: u32,

    /// Topic scenario: patterns per group (1-4). With 1 (default) pattern i is k.<i>.* or k.<i>.#
    /// (alternately); with K > 1 patterns i = g*K .. g*K+K-1 are k.<g>.*, k.<g>.#, *.<g>.r,
    /// #.<g>.r (the first K of these), so a matching key k.<g>.r matches K bindings
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub topic_matches: u32,

    /// Headers scenario: bind queues with N header bindings spread over the queues, alternately
    /// x-match=all {a: "v<g>", b: <g>} and x-match=any {c: "v<g>", d: "w<g>"} (g = i / 2); with
    /// --routing-keys M the messages carry M distinct header sets, half of them matching both
    /// bindings of one group, half none
    #[arg(long, default_value_t = 0)]
    pub header_bindings: u32,

    /// Publish with M distinct routing keys (k.<b>.r matching a binding, n.<j>.r matching none,
    /// alternating); with --header-bindings, M distinct header sets instead
    #[arg(long, default_value_t = 0)]
    pub routing_keys: u32,

    /// Each producer stops after publishing N messages (0 = no limit); with confirms it
    /// then waits for all of them. The run ends when every producer and consumer is done
    #[arg(short = 'C', long, default_value_t = 0)]
    pub pmessages: u64,

    /// Each consumer stops after receiving N messages (0 = no limit)
    #[arg(short = 'D', long, default_value_t = 0)]
    pub cmessages: u64,

    /// Keep the perf queues and their messages (default: delete them first so the run starts
    /// empty, and after a transient run), e.g. to drain a backlog left by an earlier run with
    /// `-x 0 -D N`
    #[arg(long)]
    pub keep_queues: bool,

    /// Test duration in seconds
    #[arg(short = 'z', long, default_value_t = 10.0)]
    pub duration: f64,

    /// Separate mode: open N idle connections (one channel each), print "opened N",
    /// hold them for --duration seconds, then exit
    #[arg(long)]
    pub idle_connections: Option<usize>,

    /// frame_max the idle connections ask for (0 = accept the broker's). lapin keeps
    /// 2 x 32 x frame_max bytes of buffers per connection (8 MiB at RabbitMQ's 131072),
    /// which for 1,000 connections would swamp the client machine
    #[arg(long, default_value_t = 4096)]
    pub idle_frame_max: u32,

    /// Also print the final summary as one JSON line
    #[arg(long)]
    pub json: bool,

    /// Unconfirmed-independent publish window: at most this many publishes per producer
    /// queued inside the client but not yet written to the socket
    #[arg(long, default_value_t = 512, hide = true)]
    pub write_window: usize,

    /// Do not print per-second progress lines
    #[arg(long)]
    pub quiet: bool,
}

impl Args {
    /// The exchange type to declare, if any.
    pub fn effective_exchange_type(&self) -> Option<String> {
        if let Some(t) = &self.exchange_type {
            return Some(t.clone());
        }
        if self.topic_bindings > 0 {
            return Some("topic".into());
        }
        if self.header_bindings > 0 {
            return Some("headers".into());
        }
        if self.exchange.is_some() {
            return Some("direct".into());
        }
        None
    }

    /// The exchange producers publish to ("" = default exchange).
    pub fn exchange_name(&self) -> String {
        match (&self.exchange, self.effective_exchange_type()) {
            (Some(name), _) => name.clone(),
            (None, Some(t)) => format!("perf-x-{t}"),
            (None, None) => String::new(),
        }
    }
}
