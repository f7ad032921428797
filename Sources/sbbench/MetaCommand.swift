import ArgumentParser
import Foundation
import Logging
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusProtocol
import StreamBusTransport

/// Metadata quorum benchmarks against a running metaserver cluster (`sbctl local up`).
///
/// Topics need unfenced brokers (replication factor ≤ unfenced brokers), so both commands
/// register synthetic brokers that heartbeat through the run: the controller path is the
/// real one, only the brokers hold no data.
struct MetaCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "meta",
    abstract: "Metadata quorum: create-topic latency and leader failover time.",
    subcommands: [MetaLatencyCommand.self, MetaFailoverCommand.self])
}

struct MetaClusterOptions: ParsableArguments {
  @Option(help: "Directory of a cluster started with `sbctl local up` (reads cluster.json).")
  var cluster: String

  @Option(help: "Synthetic brokers to register (ids 1...N) so topics can be placed.")
  var brokers: Int32 = 3

  @Option(help: "Output format: text or json.")
  var output: OutputFormat = .text

  func validate() throws {
    guard (1...100).contains(brokers) else {
      throw ValidationError("--brokers must be in 1...100")
    }
  }

  func load() throws -> LocalClusterFile {
    try LocalClusterFile.load(directory: cluster)
  }
}

/// The part of `sbctl local`'s cluster.json this benchmark reads.
struct LocalClusterFile: Decodable {
  struct Node: Decodable {
    var role: String
    var id: Int
    var pid: Int32
    var apiAddress: String?
    var clientAddress: String?
  }
  var metaservers: [Node]
  var brokers: [Node]

  init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    metaservers = try container.decode([Node].self, forKey: .metaservers)
    // Written before brokers joined clusters: metaservers only.
    brokers = try container.decodeIfPresent([Node].self, forKey: .brokers) ?? []
  }

  private enum CodingKeys: String, CodingKey {
    case metaservers, brokers
  }

  static func load(directory: String) throws -> LocalClusterFile {
    let path = URL(fileURLWithPath: directory).appendingPathComponent("cluster.json")
    let data: Data
    do {
      data = try Data(contentsOf: path)
    } catch {
      throw ValidationError("cannot read \(path.path): \(error.localizedDescription)")
    }
    do {
      return try JSONDecoder().decode(LocalClusterFile.self, from: data)
    } catch {
      throw ValidationError("\(path.path) is not a cluster file: \(error)")
    }
  }

  func clientAddresses() throws -> [HostPort] {
    guard !brokers.isEmpty else { throw ValidationError("cluster.json lists no brokers") }
    return try brokers.map { node in
      guard let address = node.clientAddress else {
        throw ValidationError("broker-\(node.id) has no clientAddress in cluster.json")
      }
      return try HostPort(parsing: address)
    }
  }

  func apiAddresses() throws -> [HostPort] {
    try metaservers.map { node in
      guard let address = node.apiAddress else {
        throw ValidationError("metaserver-\(node.id) has no apiAddress in cluster.json")
      }
      return try HostPort(parsing: address)
    }
  }
}

/// Registers `count` data-less brokers and keeps their sessions alive.
struct SyntheticBrokers {
  let sessions: [BrokerSession]

  static func start(client: MetaClient, count: Int32, logger: Logger) async throws
    -> SyntheticBrokers
  {
    let incarnation = Int64.random(in: 1...Int64.max)
    let applied = AppliedOffsetProbe(client: client)
    var sessions: [BrokerSession] = []
    for id in 1...count {
      let session = BrokerSession(
        client: client,
        registration: .init(
          brokerID: id, incarnationID: incarnation &+ Int64(id),
          endpoints: [MetaEndpoint(name: "client", host: "127.0.0.1", port: 1)],
          rack: "rack-\(id % 3)", capacity: MetaBrokerCapacity(diskBytes: 1 << 40)),
        appliedOffset: { await applied.committedOffset() }, logger: logger)
      try await session.start()
      sessions.append(session)
    }
    // Unfenced once each heartbeat reports the metadata up to its registration as applied.
    let clock = ContinuousClock()
    let deadline = clock.now + .seconds(30)
    for session in sessions {
      while await !session.heartbeatOnce() {
        guard clock.now < deadline else {
          let error = await session.lastHeartbeatError ?? "still fenced"
          throw ValidationError(
            "synthetic broker \(session.registration.brokerID) not unfenced in 30 s: \(error)")
        }
        try await Task.sleep(for: .milliseconds(50))
      }
    }
    return SyntheticBrokers(sessions: sessions)
  }

  func stop() async {
    for session in sessions { await session.stop() }
  }
}

/// A synthetic broker holds no metadata replica; it reports the quorum's committed offset as
/// applied, which is what a real broker reaches once its metadata fetcher caught up.
actor AppliedOffsetProbe {
  let client: MetaClient
  init(client: MetaClient) { self.client = client }

  func committedOffset() async -> Int64 {
    let response = try? await client.fetchMetadata(fromOffset: 0, maxWaitMs: 0, maxBytes: 1)
    return response?.committedOffset ?? 0
  }
}

struct MetaLatencyCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "latency",
    abstract: "Sequential create-topic requests against the quorum: p50/p99/max.")

  @OptionGroup var options: MetaClusterOptions

  @Option(help: "Topics to create (measured).")
  var count: Int = 2000

  @Option(help: "Topics created first, not measured.")
  var warmup: Int = 50

  @Option(help: "Partitions per topic.")
  var partitions: Int32 = 3

  @Option(help: "Replication factor per topic (≤ --brokers).")
  var replicationFactor: Int16 = 3

  func validate() throws {
    guard count > 0, warmup >= 0 else { throw ValidationError("--count must be positive") }
    guard replicationFactor >= 1, Int32(replicationFactor) <= options.brokers else {
      throw ValidationError("--replication-factor must be in 1...--brokers")
    }
  }

  func run() async throws {
    let logger = Logger(label: "sbbench.meta")
    let cluster = try options.load()
    let client = MetaClient(bootstrap: try cluster.apiAddresses(), logger: logger)
    let brokers = try await SyntheticBrokers.start(
      client: client, count: options.brokers, logger: logger)
    let run = UInt32.random(in: 0...UInt32.max)
    for index in 0..<warmup {
      _ = try await client.createTopic(
        "warm-\(run)-\(index)", partitions: partitions, replicationFactor: replicationFactor)
    }
    var latencies = LatencyRecorder()
    let clock = ContinuousClock()
    let started = clock.now
    for index in 0..<count {
      let before = clock.now
      _ = try await client.createTopic(
        "bench-\(run)-\(index)", partitions: partitions, replicationFactor: replicationFactor)
      latencies.record(clock.now - before)
    }
    let elapsed = clock.now - started
    await brokers.stop()
    await client.close()

    var result = BenchResult(
      benchmark: "meta-create-topic",
      parameters: [
        "metaservers": "\(cluster.metaservers.count)", "partitions": "\(partitions)",
        "replicationFactor": "\(replicationFactor)", "brokers": "\(options.brokers)",
      ],
      elapsedSeconds: elapsed.secondsDouble)
    result.records = count
    result.opsPerSecond = Double(count) / elapsed.secondsDouble
    result.latency = latencies.summary
    result.print(format: options.output)
  }
}

struct MetaFailoverCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "failover",
    abstract: "kill -9 the metaserver leader; time until the next create-topic succeeds.",
    discussion: """
      Each trial finds the leader (QuorumStatus), kills it with SIGKILL, then sends \
      create-topic requests to the survivors (each attempt bounded by --attempt-timeout-ms, \
      following NOT_LEADER hints) until one succeeds. The killed node is restarted with \
      `sbctl local start` and the next trial waits until every voter has caught up.
      """)

  @OptionGroup var options: MetaClusterOptions

  @Option(help: "Failover trials.")
  var trials: Int = 10

  @Option(help: "Bound on one create-topic attempt while the quorum has no leader.")
  var attemptTimeoutMs: Int64 = 250

  @Option(help: "Path of sbctl (default: next to this sbbench).")
  var sbctl: String?

  func run() async throws {
    let logger = Logger(label: "sbbench.meta")
    var cluster = try options.load()
    let everyone = try cluster.apiAddresses()
    let admin = MetaClient(bootstrap: everyone, logger: logger)
    let brokers = try await SyntheticBrokers.start(
      client: admin, count: options.brokers, logger: logger)
    let sbctlPath = sbctl ?? Self.siblingExecutable("sbctl")
    let clock = ContinuousClock()
    var failovers: [Double] = []
    let run = UInt32.random(in: 0...UInt32.max)

    for trial in 0..<trials {
      try await waitCaughtUp(admin, voters: cluster.metaservers.count)
      let status = try await admin.quorumStatus()
      guard let leader = cluster.metaservers.first(where: { $0.id == Int(status.leaderID) })
      else {
        throw ValidationError("leader \(status.leaderID) is not in cluster.json")
      }
      let survivors = try cluster.metaservers.filter { $0.id != leader.id }.map {
        try HostPort(parsing: $0.apiAddress ?? "")
      }
      var configuration = MetaClientConfiguration(bootstrap: survivors, requestTimeoutMs: 30_000)
      configuration.attemptTimeoutMs = attemptTimeoutMs
      configuration.retryBackoffMs = 5
      configuration.retryBackoffMaxMs = 20
      let probe = MetaClient(configuration: configuration, logger: logger)

      let killedAt = clock.now
      guard kill(leader.pid, SIGKILL) == 0 else {
        throw ValidationError("kill -9 \(leader.pid) failed: errno \(errno)")
      }
      do {
        _ = try await probe.createTopic(
          "failover-\(run)-\(trial)", partitions: 1, replicationFactor: 1)
      } catch let error as MetaClientError where error.errorCode == .topicAlreadyExists {
        // An earlier attempt that timed out on the client had committed: the write succeeded.
      }
      let seconds = (clock.now - killedAt).secondsDouble
      failovers.append(seconds)
      await probe.close()
      // Progress on stderr, unbuffered: a trial can take seconds.
      FileHandle.standardError.write(
        Data("trial \(trial + 1): metaserver-\(leader.id) killed; write after \(seconds) s\n".utf8))

      try Self.runAndWait(
        sbctlPath,
        [
          "local", "start", "--dir", options.cluster, "--node",
          "metaserver-\(leader.id)",
        ])
      cluster = try options.load()
    }
    await brokers.stop()
    await admin.close()

    let sorted = failovers.sorted()
    var result = BenchResult(
      benchmark: "meta-failover",
      parameters: [
        "metaservers": "\(cluster.metaservers.count)", "trials": "\(trials)",
        "attemptTimeoutMs": "\(attemptTimeoutMs)",
      ],
      elapsedSeconds: failovers.reduce(0, +))
    result.notes =
      "median \(Self.median(sorted)) s, max \(sorted.last ?? 0) s, all "
      + sorted.map { String(format: "%.3f", $0) }.joined(separator: ",")
    result.latency = LatencySummary(
      p50Ms: Self.median(sorted) * 1000, p99Ms: (sorted.last ?? 0) * 1000,
      p999Ms: (sorted.last ?? 0) * 1000, maxMs: (sorted.last ?? 0) * 1000,
      meanMs: failovers.reduce(0, +) / Double(max(1, failovers.count)) * 1000,
      samples: UInt64(failovers.count))
    result.print(format: options.output)
  }

  /// Every voter known to the leader, with no lag and heard from recently.
  private func waitCaughtUp(_ client: MetaClient, voters: Int) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + .seconds(60)
    while clock.now < deadline {
      if let status = try? await client.quorumStatus(), status.leaderID > 0,
        status.voters.count == voters,
        status.voters.allSatisfy({ $0.lag == 0 && $0.lastContactMs < 1_000 })
      {
        return
      }
      try await Task.sleep(for: .milliseconds(50))
    }
    throw ValidationError("the quorum did not catch up within 60 s")
  }

  static func median(_ sorted: [Double]) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
  }

  static func siblingExecutable(_ name: String) -> String {
    let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    return me.deletingLastPathComponent().appendingPathComponent(name).path
  }

  /// Runs a command to completion. Foundation's `Process.waitUntilExit` can miss the exit of
  /// a child that daemonizes its own child, so this uses posix_spawn and waitpid directly.
  static func runAndWait(_ executable: String, _ arguments: [String]) throws {
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    // The child's stdout goes to our stderr: stdout carries only the JSON results.
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO)
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
    guard spawned == 0 else {
      throw ValidationError("cannot start \(executable): \(String(cString: strerror(spawned)))")
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
      guard errno == EINTR else { throw ValidationError("waitpid failed: errno \(errno)") }
    }
    let exitCode = (status >> 8) & 0xff
    guard status & 0x7f == 0, exitCode == 0 else {
      throw ValidationError(
        "\(executable) \(arguments.joined(separator: " ")) failed (wait status \(status))")
    }
  }

}
