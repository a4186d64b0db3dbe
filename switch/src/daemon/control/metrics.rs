//! Every counter of the switch in the Prometheus text exposition format
//! (`vswitchd --metrics-listen`, `vswitchctl stats --prometheus`): per
//! port, per drop reason, per network (FDB, learning, embedded DNS, the L4
//! translator), link impairment per port, the underlay endpoint, the model's sizes, the datapath
//! loop's busy time, and the events reported and lost.
//! Built from one datapath snapshot per scrape.

use std::collections::BTreeMap;

use prometheus::{CounterVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use super::{Control, VTEP_PORT_NAME, datapath_error};
use ctl::proto::CtlError;

/// The content type of [`Control::metrics_text`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Builds and registers metric families, keeping the first error.
struct Builder {
    registry: Registry,
    error: Option<prometheus::Error>,
}

impl Builder {
    fn counters(&mut self, name: &str, help: &str, labels: &[&str]) -> Option<IntCounterVec> {
        let made = IntCounterVec::new(Opts::new(name, help), labels);
        self.made(made)
    }

    fn gauges(&mut self, name: &str, help: &str, labels: &[&str]) -> Option<IntGaugeVec> {
        let made = IntGaugeVec::new(Opts::new(name, help), labels);
        self.made(made)
    }

    /// Registers a metric that was made, or keeps the error.
    fn made<M: prometheus::core::Collector + Clone + 'static>(&mut self, made: prometheus::Result<M>) -> Option<M> {
        match made {
            Ok(metric) => self.register(metric),
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    fn register<M: prometheus::core::Collector + Clone + 'static>(&mut self, metric: M) -> Option<M> {
        match self.registry.register(Box::new(metric.clone())) {
            Ok(()) => Some(metric),
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }
}

/// One embedded-DNS counter: its name, help, and how to read it.
type DnsMetric = (&'static str, &'static str, fn(&dns::Counters) -> u64);

/// One L4 translator counter: its name, help, and how to read it.
type NatMetric = (&'static str, &'static str, fn(&crate::nat::Counters) -> u64);

/// One link impairment counter: its name, help, and how to read it.
type ImpairMetric = (&'static str, &'static str, fn(&crate::impair::ImpairCounters) -> u64);

/// Sets counter `values` (one per label set) in `family`.
fn set(family: &Option<IntCounterVec>, labels: &[&str], value: u64) {
    if let Some(f) = family {
        f.with_label_values(labels).inc_by(value);
    }
}

/// The `worker` label of worker `k`: its thread's name, as `stats` names
/// its row.
fn worker_label(k: usize) -> String {
    format!("vsw-dp-{k}")
}

impl Control {
    /// The metrics text: one Prometheus exposition of every counter.
    pub(super) fn metrics_text(&self) -> Result<String, CtlError> {
        let snapshot = self.datapath.snapshot().map_err(datapath_error)?;
        let (names, _) = self.port_names(&snapshot);
        let mut b = Builder { registry: Registry::new(), error: None };
        let pl = &["port", "network"];
        let rx_packets = b.counters("vswitch_port_rx_packets_total", "Frames received from the port.", pl);
        let rx_bytes = b.counters("vswitch_port_rx_bytes_total", "Bytes received from the port.", pl);
        let tx_packets = b.counters("vswitch_port_tx_packets_total", "Frames sent to the port.", pl);
        let tx_bytes = b.counters("vswitch_port_tx_bytes_total", "Bytes sent to the port.", pl);
        let flooded = b.counters("vswitch_port_rx_flooded_total", "Frames from the port that were flooded.", pl);
        let drops = b.counters(
            "vswitch_port_drops_total",
            "Frames dropped, by port and reason.",
            &["port", "network", "reason"],
        );
        for (id, network, c) in &snapshot.ports {
            let port = names.get(id).cloned().unwrap_or_else(|| id.to_string());
            let network = self.network_name(*network);
            let l = [port.as_str(), network.as_str()];
            set(&rx_packets, &l, c.rx_packets);
            set(&rx_bytes, &l, c.rx_bytes);
            set(&tx_packets, &l, c.tx_packets);
            set(&tx_bytes, &l, c.tx_bytes);
            set(&flooded, &l, c.rx_flooded);
            for (reason, n) in c.drops.iter().filter(|(_, n)| *n > 0) {
                set(&drops, &[port.as_str(), network.as_str(), reason.name()], n);
            }
        }
        let tap_queue = b.counters(
            "vswitch_port_tap_queue_dropped_total",
            "Frames the port's sandbox sent that the kernel dropped because the TAP's queue to the switch was \
             full (the TAP's tx_dropped); they never reached the switch.",
            pl,
        );
        let taps = self.tap_links();
        for (id, network, _) in &snapshot.ports {
            let Some(port) = names.get(id) else { continue };
            if let Some(n) = taps.get(port).and_then(|l| l.tx_dropped) {
                set(&tap_queue, &[port.as_str(), self.network_name(*network).as_str()], n);
            }
        }
        let impair: [ImpairMetric; 5] = [
            ("vswitch_port_impair_delayed_total", "Frames the port's impairment queued (delayed or paced).", |c| {
                c.delayed
            }),
            ("vswitch_port_impair_lost_total", "Frames the port's impairment dropped at random.", |c| c.lost),
            ("vswitch_port_impair_duplicated_total", "Extra copies the port's impairment sent.", |c| c.duplicated),
            ("vswitch_port_impair_reordered_total", "Frames the port's impairment sent ahead of delayed ones.", |c| {
                c.reordered
            }),
            ("vswitch_port_impair_queue_full_total", "Frames dropped: the port's impairment queue was full.", |c| {
                c.queue_full
            }),
        ];
        for (name, help, value) in impair {
            let family = b.counters(name, help, pl);
            for i in &snapshot.impair {
                let Some((_, network, _)) = snapshot.ports.iter().find(|(p, _, _)| *p == i.port) else { continue };
                let port = names.get(&i.port).cloned().unwrap_or_else(|| i.port.to_string());
                set(&family, &[port.as_str(), self.network_name(*network).as_str()], value(&i.counters));
            }
        }
        if let Some(queued) = b.gauges("vswitch_port_impair_queued", "Frames in the port's impairment queue now.", pl) {
            for i in &snapshot.impair {
                let Some((_, network, _)) = snapshot.ports.iter().find(|(p, _, _)| *p == i.port) else { continue };
                let port = names.get(&i.port).cloned().unwrap_or_else(|| i.port.to_string());
                let n = i64::try_from(i.counters.queued).unwrap_or(i64::MAX);
                queued.with_label_values(&[port.as_str(), self.network_name(*network).as_str()]).set(n);
            }
        }
        if let Some(v) = snapshot.vtep {
            let l = [VTEP_PORT_NAME, "(underlay)"];
            set(&rx_packets, &l, v.rx_packets);
            set(&rx_bytes, &l, v.rx_bytes);
            set(&tx_packets, &l, v.tx_packets);
            set(&tx_bytes, &l, v.tx_bytes);
            for (reason, n) in v.drops.iter().filter(|(_, n)| *n > 0) {
                set(&drops, &[VTEP_PORT_NAME, "(underlay)", reason.name()], n);
            }
        }

        let nl = &["network"];
        let fdb_entries = b.gauges("vswitch_fdb_entries", "Forwarding table entries, learned and static.", nl);
        let mut per_network: BTreeMap<String, i64> = BTreeMap::new();
        for record in &snapshot.fdb {
            *per_network.entry(self.network_name(record.network)).or_default() += 1;
        }
        if let Some(g) = &fdb_entries {
            for (network, n) in per_network {
                g.with_label_values(&[network.as_str()]).set(n);
            }
        }
        let learned = b.counters("vswitch_fdb_learned_total", "New (network, MAC) entries learned.", nl);
        let moves = b.counters("vswitch_fdb_station_moves_total", "Learned MACs that moved to another port.", nl);
        let full = b.counters("vswitch_fdb_table_full_total", "MACs not learned: the table was full.", nl);
        let limit = b.counters("vswitch_fdb_port_limit_total", "MACs not learned: the port's limit was reached.", nl);
        let aged = b.counters("vswitch_fdb_aged_out_total", "Entries removed by aging.", nl);
        for (network, c) in &snapshot.learning {
            let network = self.network_name(*network);
            let l = [network.as_str()];
            set(&learned, &l, c.learned);
            set(&moves, &l, c.station_moves);
            set(&full, &l, c.table_full);
            set(&limit, &l, c.port_limit);
            set(&aged, &l, c.aged_out);
        }

        let arp = b.counters("vswitch_proxy_arp_replies_total", "ARP requests for remote endpoints answered.", nl);
        let nd =
            b.counters("vswitch_proxy_nd_replies_total", "Neighbour solicitations for remote endpoints answered.", nl);
        for (network, c) in &snapshot.proxy {
            let network = self.network_name(*network);
            set(&arp, &[network.as_str()], c.arp_replies);
            set(&nd, &[network.as_str()], c.nd_replies);
        }

        let dns: [DnsMetric; 11] = [
            ("vswitch_dns_queries_total", "Queries to the embedded DNS.", |c| c.queries),
            ("vswitch_dns_answered_locally_total", "Queries answered from the switch's records.", |c| {
                c.answered_locally
            }),
            ("vswitch_dns_nxdomain_total", "NXDOMAIN decided by the switch.", |c| c.nxdomain),
            ("vswitch_dns_nodata_total", "Known names asked for a type they lack.", |c| c.nodata),
            ("vswitch_dns_forwarded_total", "Queries forwarded upstream.", |c| c.forwarded),
            ("vswitch_dns_upstream_failures_total", "Forwarded queries no upstream answered.", |c| c.upstream_failures),
            ("vswitch_dns_malformed_total", "Malformed DNS messages.", |c| c.malformed),
            ("vswitch_dns_refused_total", "Queries refused: unknown or spoofed source, other opcodes.", |c| c.refused),
            ("vswitch_dns_refused_over_limit_total", "Queries refused: too many in flight.", |c| c.refused_over_limit),
            ("vswitch_dns_truncated_total", "UDP answers sent truncated.", |c| c.truncated),
            ("vswitch_dns_tcp_closed_total", "DNS TCP connections cut or evicted.", |c| c.tcp_closed_idle),
        ];
        for (name, help, value) in dns {
            let family = b.counters(name, help, nl);
            for (network, c) in &snapshot.dns {
                set(&family, &[self.network_name(*network).as_str()], value(c));
            }
        }

        let nat: [NatMetric; 4] = [
            ("vswitch_nat_flows_opened_total", "Translator flows opened (egress and published ports).", |c| {
                c.flows_opened
            }),
            (
                "vswitch_nat_flows_refused_total",
                "Translator flows refused: destination or every backend refused.",
                |c| c.flows_refused,
            ),
            (
                "vswitch_nat_flows_timed_out_total",
                "Translator flows closed idle or with an unfinished handshake.",
                |c| c.flows_timed_out,
            ),
            ("vswitch_nat_table_full_total", "New translator flows refused: the flow table was full.", |c| {
                c.table_full
            }),
        ];
        for (name, help, value) in nat {
            let family = b.counters(name, help, nl);
            for (network, c) in &snapshot.nat {
                set(&family, &[self.network_name(*network).as_str()], value(c));
            }
        }
        if let Some(active) = b.gauges("vswitch_nat_flows_active", "Translator flows open now.", nl) {
            for (network, c) in &snapshot.nat {
                let n = i64::try_from(c.active).unwrap_or(i64::MAX);
                active.with_label_values(&[self.network_name(*network).as_str()]).set(n);
            }
        }

        if let Some(sizes) = b.gauges("vswitch_objects", "Networks, sandboxes and endpoints in the model.", &["kind"]) {
            let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            sizes.with_label_values(&["networks"]).set(count(self.model.networks().len()));
            sizes.with_label_values(&["services"]).set(count(self.model.services().count()));
            sizes.with_label_values(&["sandboxes"]).set(count(self.model.sandboxes().count()));
            sizes.with_label_values(&["endpoints"]).set(count(self.model.endpoints().count()));
        }
        // One series per worker thread (`vsw-dp-K`, as `stats` names its
        // rows): a busy worker stays visible next to an idle one; the
        // daemon's total is their sum.
        let busy = CounterVec::new(
            Opts::new(
                "vswitch_datapath_busy_seconds_total",
                "Time each datapath worker thread spent working rather than waiting for events.",
            ),
            &["worker"],
        );
        let busy = b.made(busy);
        let wakeups =
            b.counters("vswitch_datapath_wakeups_total", "Times each datapath worker thread woke up.", &["worker"]);
        // Spread networks (`-o spread`): what each worker forwarded as a
        // replica, and the frames between replicas and owners.
        let spread = b.counters(
            "vswitch_datapath_spread_frames_total",
            "Frames of spread networks per worker: forwarded as a replica, handed to the owner, taken from replicas.",
            &["worker", "role"],
        );
        let placed = b.counters(
            "vswitch_datapath_spread_connections_placed_total",
            "TCP connections of spread networks a worker placed on another, less busy worker (out) or took (in).",
            &["worker", "direction"],
        );
        for (k, w) in snapshot.workers.iter().enumerate() {
            let worker = worker_label(k);
            if let Some(busy) = &busy {
                busy.with_label_values(&[worker.as_str()]).inc_by(w.busy.as_secs_f64());
            }
            set(&wakeups, &[worker.as_str()], w.wakeups);
            for (role, n) in
                [("replica", w.spread.replica_rx), ("to_owner", w.spread.punted), ("from_replicas", w.spread.taken)]
            {
                set(&spread, &[worker.as_str(), role], n);
            }
            for (direction, n) in [("out", w.spread.placed_out), ("in", w.spread.placed_in)] {
                set(&placed, &[worker.as_str(), direction], n);
            }
        }

        let events = self.events.counters();
        let by_kind =
            b.counters("vswitch_events_total", "Switch events reported (vswitchctl events), by kind.", &["kind"]);
        for (kind, n) in &events.by_kind {
            set(&by_kind, &[kind], *n);
        }
        let lost = b.counters(
            "vswitch_events_lost_total",
            "Events lost: inside the daemon before being reported, or by subscribers that read too slowly.",
            &["scope"],
        );
        set(&lost, &["daemon"], events.lost_daemon);
        set(&lost, &["stream"], events.lost_streams);
        let subscribers = IntGauge::new("vswitch_event_subscribers", "Clients following the events now.");
        if let Some(g) = b.made(subscribers) {
            g.set(i64::try_from(events.subscribers).unwrap_or(i64::MAX));
        }

        if let Some(e) = b.error {
            return Err(CtlError::internal(format!("cannot build metrics: {e}")));
        }
        TextEncoder::new()
            .encode_to_string(&b.registry.gather())
            .map_err(|e| CtlError::internal(format!("cannot encode metrics: {e}")))
    }
}
