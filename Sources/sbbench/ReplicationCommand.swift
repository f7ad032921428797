import ArgumentParser
import Foundation
import Logging
import StreamBusClient
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusProtocol
import StreamBusTestSupport
import StreamBusTransport

/// Benchmarks of the replicated data path against a running cluster of metaservers and
/// brokers (`sbctl local up`).
struct ReplicationCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "replication",
    abstract: "Replicated data path: broker failover time, replication lag.",
    subcommands: [ReplicationFailoverCommand.self, ReplicationLagCommand.self])
}

struct ReplicationFailoverCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "failover",
    abstract: "kill -9 a partition leader; time until the next acks=all produce succeeds.",
    discussion: """
      Each trial waits until the partition's ISR holds every replica, finds its leader \
      (DescribeTopic on the metaservers), kills that broker with SIGKILL and sends one \
      acks=all record with a StreamBusClient producer using its default retry settings; \
      the time from the kill to the acknowledgement is the failover time. The killed \
      broker is restarted with `sbctl local start` before the next trial.
      """)

  @Option(help: "Directory of a cluster started with `sbctl local up` (reads cluster.json).")
  var cluster: String

  @Option(help: "Failover trials.")
  var trials: Int = 10

  @Option(help: "Topic to use (created with one partition and RF 3 when missing).")
  var topic: String = "failover-bench"

  @Option(help: "Replication factor of the topic when it is created.")
  var replicationFactor: Int16 = 3

  @Option(help: "Path of sbctl (default: next to this sbbench).")
  var sbctl: String?

  @Option(help: "Output format: text or json.")
  var output: OutputFormat = .text

  func run() async throws {
    let logger = Logger(label: "sbbench.replication")
    var cluster = try LocalClusterFile.load(directory: self.cluster)
    let admin = MetaClient(bootstrap: try cluster.apiAddresses(), logger: logger)
    do {
      _ = try await admin.createTopic(
        topic, partitions: 1, replicationFactor: replicationFactor)
    } catch let error as MetaClientError where error.errorCode == .topicAlreadyExists {
      // Left by an earlier run: reused.
    }
    let sbctlPath = sbctl ?? MetaFailoverCommand.siblingExecutable("sbctl")
    let clock = ContinuousClock()
    var failovers: [Double] = []
    let value = recordValue(bytes: 1024, seed: 7)

    for trial in 0..<trials {
      let replicas = try await Self.waitFullIsr(admin, topic: topic)
      let producer = Producer(
        config: ClientConfig(bootstrapBrokers: try cluster.clientAddresses()),
        producerConfig: ProducerConfig(acks: .all))
      // Metadata and a connection to the leader are in place before the kill, as for a
      // producer that was already running.
      try await producer.send(topic: topic, value: value, partition: 0)
      let leaderID = try await Self.currentLeader(admin, topic: topic)
      guard let leader = cluster.brokers.first(where: { $0.id == Int(leaderID) }) else {
        throw ValidationError("leader \(leaderID) is not in cluster.json")
      }
      let killedAt = clock.now
      guard kill(leader.pid, SIGKILL) == 0 else {
        throw ValidationError("kill -9 \(leader.pid) failed: errno \(errno)")
      }
      try await producer.send(topic: topic, value: value, partition: 0)
      let seconds = (clock.now - killedAt).secondsDouble
      failovers.append(seconds)
      await producer.close()
      FileHandle.standardError.write(
        Data(
          "trial \(trial + 1): broker-\(leader.id) (of \(replicas)) killed; acks=all after \(seconds) s\n"
            .utf8))
      try MetaFailoverCommand.runAndWait(
        sbctlPath, ["local", "start", "--dir", self.cluster, "--node", "broker-\(leader.id)"])
      cluster = try LocalClusterFile.load(directory: self.cluster)
    }
    await admin.close()

    let sorted = failovers.sorted()
    var result = BenchResult(
      benchmark: "broker-failover",
      parameters: [
        "brokers": "\(cluster.brokers.count)", "trials": "\(trials)",
        "replicationFactor": "\(replicationFactor)",
      ],
      elapsedSeconds: failovers.reduce(0, +))
    let median = MetaFailoverCommand.median(sorted)
    let maximum = sorted.last ?? 0
    result.notes =
      "median \(median) s, max \(maximum) s, all "
      + sorted.map { String(format: "%.3f", $0) }.joined(separator: ",")
    result.latency = LatencySummary(
      p50Ms: median * 1000, p99Ms: maximum * 1000, p999Ms: maximum * 1000,
      maxMs: maximum * 1000,
      meanMs: failovers.reduce(0, +) / Double(max(1, failovers.count)) * 1000,
      samples: UInt64(failovers.count))
    result.print(format: output)
  }

  /// Waits until partition 0 has a leader and every replica in its ISR; returns the count.
  static func waitFullIsr(_ admin: MetaClient, topic: String) async throws -> Int {
    let clock = ContinuousClock()
    let deadline = clock.now + .seconds(60)
    var last = "no answer"
    while clock.now < deadline {
      do {
        let description = try await admin.describeTopic(topic)
        if let partition = description.partitions.first(where: { $0.partition == 0 }) {
          last = "leader \(partition.leader), isr \(partition.isr) of \(partition.replicas)"
          if partition.leader >= 0, partition.isr.count == partition.replicas.count {
            return partition.replicas.count
          }
        }
      } catch {
        last = "\(error)"
      }
      try await Task.sleep(for: .milliseconds(100))
    }
    throw ValidationError("\(topic)-0 did not get a full ISR within 60 s (\(last))")
  }

  static func currentLeader(_ admin: MetaClient, topic: String) async throws -> Int32 {
    let description = try await admin.describeTopic(topic)
    guard let partition = description.partitions.first(where: { $0.partition == 0 }),
      partition.leader >= 0
    else { throw ValidationError("\(topic)-0 has no leader") }
    return partition.leader
  }
}

struct ReplicationLagCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "lag",
    abstract: "Replication lag (leader append → follower durable) at a fixed produce rate.",
    discussion: """
      Creates a fresh topic (--partitions, RF 3), waits for a full ISR, produces at --rate \
      records/s for --duration-s with a StreamBusClient producer, then reads each leader's \
      measurement through ReplicaStatus: for every batch and follower, the time from the \
      leader's append to the fetch in which that follower reports the batch fsynced. The \
      partition with the worst p99 is reported. The topic is deleted afterwards (unless \
      --keep-topic): every partition a broker hosts costs it work in each replica fetch \
      round, so topics left behind by earlier runs would make later runs measure more.
      """)

  @Option(help: "Directory of a cluster started with `sbctl local up` (reads cluster.json).")
  var cluster: String

  @Option(help: "Records per second.")
  var rate: Int = 1_000

  @Option(help: "Seconds to produce.")
  var durationS: Double = 10

  @Option(help: "Value bytes per record.")
  var recordBytes: Int = 1024

  @Option(help: "Acknowledgement the producer waits for: 1 or all.")
  var acks: AcksOption = .all

  @Option(help: "Replication factor of the topic.")
  var replicationFactor: Int16 = 3

  @Option(help: "Partitions of the topic; the partition with the worst p99 is reported.")
  var partitions: Int32 = 1

  @Option(help: "Producer lingerMs.")
  var lingerMs: Int64 = 0

  @Option(help: "Producer batchBytes.")
  var batchBytes: Int = 64 * 1024

  @Option(help: "Output format: text or json.")
  var output: OutputFormat = .text

  @Flag(help: "Keep the topic after the run (it is deleted by default).")
  var keepTopic = false

  func validate() throws {
    guard partitions >= 1 else { throw ValidationError("--partitions must be at least 1") }
    guard rate > 0, durationS > 0, recordBytes > 0 else {
      throw ValidationError("--rate, --duration-s and --record-bytes must be positive")
    }
  }

  func run() async throws {
    let logger = Logger(label: "sbbench.replication")
    let cluster = try LocalClusterFile.load(directory: self.cluster)
    let admin = MetaClient(bootstrap: try cluster.apiAddresses(), logger: logger)
    let topic = uniqueTopicName(prefix: "lag")
    _ = try await admin.createTopic(
      topic, partitions: partitions, replicationFactor: replicationFactor)
    _ = try await ReplicationFailoverCommand.waitFullIsr(admin, topic: topic)
    let clientAddress = try cluster.clientAddresses()[0]
    let run = ClientProduceRun(
      address: clientAddress.description, topic: topic, recordBytes: recordBytes,
      acks: acks == .all ? .all : .leader, lingerMs: lingerMs, batchBytes: batchBytes,
      inflightRequestsMax: 5, bufferBytesMax: 32 << 20, rate: rate,
      budget: WorkBudget(
        records: nil,
        deadline: ContinuousClock.now + .milliseconds(Int64(durationS * 1000))))
    let started = ContinuousClock.now
    let outcome = try await run.run()
    let elapsed = (ContinuousClock.now - started).secondsDouble

    // Each partition's leader measured its own followers; the worst partition is reported.
    let description = try await admin.describeTopic(topic)
    var worst: ReplicaStatusResponse.ReplicationLag?
    var samples: Int64 = 0
    for assignment in description.partitions {
      guard let leader = cluster.brokers.first(where: { $0.id == Int(assignment.leader) }),
        let leaderAddress = leader.clientAddress
      else { throw ValidationError("leader \(assignment.leader) is not in cluster.json") }
      let status = try await RawBrokerClient.connect(to: leaderAddress, clientId: "sbbench")
      let (header, response) = try await status.send(
        .replicaStatus(
          ReplicaStatusRequest(topics: [.init(name: topic, partitions: [assignment.partition])])))
      await status.close()
      guard header.errorCode == .none, case .replicaStatus(let body) = response,
        let partition = body.topics.first?.partitions.first, partition.errorCode == .none
      else {
        throw ValidationError(
          "ReplicaStatus from broker-\(assignment.leader) failed: \(header.errorCode)")
      }
      samples += partition.replicationLag.samples
      if partition.replicationLag.samples > 0
        && partition.replicationLag.p99Us > (worst?.p99Us ?? -1)
      {
        worst = partition.replicationLag
      }
    }
    let lag = worst ?? .none
    if !keepTopic {
      do {
        try await admin.deleteTopic(topic)
      } catch {
        logger.warning("could not delete the benchmark topic \(topic): \(error)")
      }
    }
    await admin.close()

    var result = BenchResult(
      benchmark: "replication-lag",
      parameters: [
        "rate": "\(rate)", "recordBytes": "\(recordBytes)", "acks": acks.rawValue,
        "replicationFactor": "\(replicationFactor)", "brokers": "\(cluster.brokers.count)",
        "partitions": "\(partitions)", "lingerMs": "\(lingerMs)", "batchBytes": "\(batchBytes)",
      ],
      elapsedSeconds: elapsed)
    result.records = outcome.records
    result.errors = outcome.errors
    result.recordsPerSecond = Double(outcome.records) / elapsed
    result.latency = LatencySummary(
      p50Ms: Double(lag.p50Us) / 1000, p99Ms: Double(lag.p99Us) / 1000,
      p999Ms: Double(lag.maxUs) / 1000, maxMs: Double(lag.maxUs) / 1000, meanMs: 0,
      samples: UInt64(max(lag.samples, 0)))
    let acked = outcome.latencies.summary
    result.notes =
      "latency = leader append → follower durable, worst partition of \(partitions) "
      + "(\(lag.samples) of \(samples) samples, batches × followers); "
      + "producer acks p50 \(acked?.p50Ms ?? -1) ms, p99 \(acked?.p99Ms ?? -1) ms"
    result.print(format: output)
  }
}
