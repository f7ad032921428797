import Foundation
import StreamBusProtocol
import StreamBusTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// `sbctl local up` with data brokers: 3 metaservers + 3 brokers as detached processes, the
/// demo topic, `topic describe` and `cluster status` against them, and `local down`.
@Suite(.timeLimit(.minutes(3)))
struct LocalBrokerClusterTests {
  struct ClusterFile: Decodable {
    struct Node: Decodable {
      let role: String
      let id: Int
      let pid: Int32
      let apiAddress: String?
      let clientAddress: String?
      let dataDir: String
      let logFile: String
      let readyFile: String?
    }
    let metaservers: [Node]
    let brokers: [Node]
  }

  static func load(_ directory: URL) throws -> ClusterFile {
    try JSONDecoder().decode(
      ClusterFile.self, from: Data(contentsOf: directory.appendingPathComponent("cluster.json")))
  }

  static func killListed(_ directory: URL) {
    guard let file = try? load(directory) else { return }
    for node in file.metaservers + file.brokers where MetaLocalClusterTests.isAlive(node.pid) {
      kill(node.pid, SIGKILL)
    }
  }

  static func json(_ text: String) throws -> [String: Any] {
    let value = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return try #require(value as? [String: Any])
  }

  @Test func upDescribeProduceStatusAndDown() async throws {
    try await ProcessHarness.run { harness in
      let directory = harness.rootDirectory.appendingPathComponent("local")
      defer { Self.killListed(directory) }
      func sbctl(_ arguments: [String], stdin: URL? = nil) async throws -> ProcessResult {
        try await harness.run(
          executableNamed: "sbctl", arguments: arguments, stdin: stdin, timeoutMs: 90_000)
      }

      let up = try await sbctl(["local", "up", "--dir", directory.path]).checkSuccess()
      #expect(up.stdoutText.contains(": 3 metaservers, 3 brokers"), "\(up.stdoutText)")
      #expect(
        up.stdoutText.contains("created topic demo (partitions: 3, replication factor: 3)"))
      let file = try Self.load(directory)
      #expect(file.metaservers.count == 3)
      #expect(file.brokers.map(\.id) == [1, 2, 3])
      for broker in file.brokers {
        #expect(broker.role == "broker")
        #expect(MetaLocalClusterTests.isAlive(broker.pid))
        #expect(broker.clientAddress?.hasPrefix("127.0.0.1:") == true)
        #expect(FileManager.default.fileExists(atPath: broker.dataDir))
        #expect(FileManager.default.fileExists(atPath: broker.logFile))
        let ready = try String(contentsOfFile: try #require(broker.readyFile), encoding: .utf8)
        #expect(!ready.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
      }
      let metaservers = file.metaservers.compactMap(\.apiAddress).joined(separator: ",")
      let brokers = file.brokers.compactMap(\.clientAddress).joined(separator: ",")

      let env = try await sbctl(["local", "env", "--dir", directory.path]).checkSuccess()
      #expect(
        env.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
          == "export SB_METASERVERS=\(metaservers) SB_BROKERS=\(brokers)")

      // acks=all round trip through the brokers.
      let recordCount = 30
      let input = harness.rootDirectory.appendingPathComponent("records.txt")
      try (0..<recordCount).map { "record-\($0)\n" }.joined().write(
        to: input, atomically: true, encoding: .utf8)
      try await sbctl(
        ["produce", "demo", "--acks", "all", "--brokers", brokers], stdin: input
      ).checkSuccess()
      let consumed = try await sbctl([
        "consume", "demo", "--from", "beginning", "--count", "\(recordCount)", "--timeout-ms",
        "5000", "--output", "jsonl", "--brokers", brokers,
      ]).checkSuccess()
      let values = Set(
        try consumed.stdoutText.split(separator: "\n").map { try Self.json(String($0)) }
          .compactMap { $0["value"] as? String })
      #expect(values == Set((0..<recordCount).map { "record-\($0)" }))

      // Every replica in the ISR, and (once followers fetched) every LEO equal to the HW.
      var partitions: [[String: Any]] = []
      let deadline = ContinuousClock.now + .seconds(15)
      while true {
        let describe = try await sbctl([
          "topic", "describe", "demo", "--metaservers", metaservers, "--output", "json",
        ]).checkSuccess()
        partitions = try #require(
          try Self.json(describe.stdoutText)["partitions"] as? [[String: Any]])
        let settled = partitions.allSatisfy { partition in
          let states = partition["replicaStates"] as? [[String: Any]] ?? []
          let offsets = Set(states.map { $0["logEndOffset"] as? Int ?? -1 })
          return offsets.count == 1 && offsets.first == partition["highWatermark"] as? Int
        }
        if settled || ContinuousClock.now > deadline { break }
        try await Task.sleep(for: .milliseconds(200))
      }
      #expect(partitions.count == 3)
      var highWatermarkTotal = 0
      for partition in partitions {
        let replicas = partition["replicas"] as? [Int] ?? []
        #expect(replicas.count == 3)
        #expect(Set(partition["isr"] as? [Int] ?? []) == Set(replicas))
        #expect(partition["underReplicated"] as? Bool == false)
        #expect(partition["offline"] as? Bool == false)
        let highWatermark = try #require(partition["highWatermark"] as? Int)
        highWatermarkTotal += highWatermark
        let states = try #require(partition["replicaStates"] as? [[String: Any]])
        #expect(
          states.map { $0["logEndOffset"] as? Int } == Array(repeating: highWatermark, count: 3))
        #expect(states.filter { $0["role"] as? String == "leader" }.count == 1)
        #expect(states.filter { $0["role"] as? String == "follower" }.count == 2)
      }
      #expect(highWatermarkTotal == recordCount)

      let table = try await sbctl(["topic", "describe", "demo", "--metaservers", metaservers])
        .checkSuccess()
      #expect(table.stdoutText.contains("HW  LEO"))
      #expect(!table.stdoutText.contains("under-replicated"))

      let status = try await sbctl(
        ["cluster", "status", "--metaservers", metaservers, "--output", "json"]
      ).checkSuccess()
      let cluster = try Self.json(status.stdoutText)
      let listed = try #require(cluster["brokers"] as? [[String: Any]])
      #expect(listed.map { $0["id"] as? Int } == [1, 2, 3])
      #expect(listed.allSatisfy { $0["fenced"] as? Bool == false })
      #expect(
        Set(listed.compactMap { $0["address"] as? String })
          == Set(brokers.split(separator: ",").map(String.init)))
      #expect((cluster["underReplicated"] as? [Any])?.isEmpty == true)
      #expect((cluster["offline"] as? [Any])?.isEmpty == true)

      // A stopped broker: its replicas leave the ISR (controlled shutdown), describe marks
      // every partition under-replicated and shows `-` for its LEO; it rejoins on restart.
      try await sbctl(["local", "stop", "--dir", directory.path, "--node", "broker-2"])
        .checkSuccess()
      let degraded = try await sbctl([
        "topic", "describe", "demo", "--cluster-dir", directory.path, "--output", "json",
      ]).checkSuccess()
      let degradedPartitions = try #require(
        try Self.json(degraded.stdoutText)["partitions"] as? [[String: Any]])
      for partition in degradedPartitions {
        #expect(partition["underReplicated"] as? Bool == true)
        #expect((partition["isr"] as? [Int])?.contains(2) == false)
        let states = partition["replicaStates"] as? [[String: Any]] ?? []
        let stopped = try #require(states.first { $0["broker"] as? Int == 2 })
        #expect(stopped["logEndOffset"] is NSNull)
        #expect(stopped["error"] is String)
      }
      let degradedTable = try await sbctl(
        ["topic", "describe", "demo", "--cluster-dir", directory.path]
      ).checkSuccess()
      #expect(degradedTable.stdoutText.contains("2=-"))
      #expect(degradedTable.stdoutText.contains("under-replicated"))
      let degradedStatus = try await sbctl(
        ["cluster", "status", "--cluster-dir", directory.path, "--output", "json"]
      ).checkSuccess()
      let degradedCluster = try Self.json(degradedStatus.stdoutText)
      let named = (degradedCluster["underReplicated"] as? [[String: Any]] ?? []).map {
        "\($0["topic"] ?? "")-\($0["partition"] ?? "")"
      }
      #expect(named == ["demo-0", "demo-1", "demo-2"])
      let brokerTwo = (degradedCluster["brokers"] as? [[String: Any]] ?? []).first {
        $0["id"] as? Int == 2
      }
      // Right after its controlled shutdown; fenced once its session expires (1.5 s).
      #expect(
        brokerTwo?["inControlledShutdown"] as? Bool == true || brokerTwo?["fenced"] as? Bool == true
      )

      try await sbctl(["local", "start", "--dir", directory.path, "--node", "broker-2"])
        .checkSuccess()
      let rejoinDeadline = ContinuousClock.now + .seconds(15)
      var rejoined = false
      while !rejoined && ContinuousClock.now < rejoinDeadline {
        let status = try await sbctl(
          ["cluster", "status", "--cluster-dir", directory.path, "--output", "json"]
        ).checkSuccess()
        rejoined = (try Self.json(status.stdoutText)["underReplicated"] as? [Any])?.isEmpty == true
        if !rejoined { try await Task.sleep(for: .milliseconds(200)) }
      }
      #expect(rejoined, "broker 2 did not rejoin every ISR within 15 s")

      let local = try await sbctl(["local", "status", "--dir", directory.path, "--output", "json"])
        .checkSuccess()
      let rows =
        try JSONSerialization.jsonObject(with: Data(local.stdoutText.utf8)) as? [[String: Any]]
      #expect(rows?.count == 6)
      #expect(rows?.allSatisfy { $0["running"] as? Bool == true } == true)
      #expect(rows?.suffix(3).map { $0["readiness"] as? String } == ["ready", "ready", "ready"])
      #expect(rows?.allSatisfy { $0["paused"] as? Bool == false } == true)

      // A SIGSTOPped broker holds its ports but answers nothing: status says paused.
      let pausedPid = try #require(try Self.load(directory).brokers.first { $0.id == 3 }?.pid)
      kill(pausedPid, SIGSTOP)
      let pausedStatus = try await sbctl(["local", "status", "--dir", directory.path])
      kill(pausedPid, SIGCONT)
      try pausedStatus.checkSuccess()
      let pausedLine = pausedStatus.stdoutText.split(separator: "\n").first {
        $0.hasPrefix("broker-3")
      }
      #expect(pausedLine?.contains("paused") == true, "\(pausedStatus.stdoutText)")
      #expect(pausedLine?.contains("kill -CONT \(pausedPid)") == true)

      try await sbctl(["local", "down", "--dir", directory.path]).checkSuccess()
      for node in try Self.load(directory).metaservers + Self.load(directory).brokers {
        #expect(!MetaLocalClusterTests.isAlive(node.pid), "\(node.role)-\(node.id)")
      }
      try await sbctl(["local", "down", "--dir", directory.path, "--purge"]).checkSuccess()
      #expect(!FileManager.default.fileExists(atPath: directory.path))
    }
  }

  /// The ReplicaStatus handler on a standalone broker: role, offsets, unknown partitions.
  @Test func standaloneBrokerAnswersReplicaStatus() async throws {
    try await ProcessHarness.run { harness in
      let broker = try await harness.startBroker()
      let client = try await RawBrokerClient.connect(to: broker.address)
      try await client.createTopic("status", partitions: 2)
      let produced = try await client.produce(
        topic: "status", partition: 1,
        records: RecordBatches.batch(values: [[1], [2], [3]]), acks: -1)
      // acks=all: answered once fsynced, so the high watermark has passed the records.
      #expect(produced.errorCode == .none)

      func ask(_ topics: [ReplicaStatusRequest.Topic]) async throws -> ReplicaStatusResponse {
        let (header, response) = try await client.send(
          .replicaStatus(ReplicaStatusRequest(topics: topics)))
        #expect(header.errorCode == .none)
        guard case .replicaStatus(let body) = response else {
          throw HarnessError("ReplicaStatus: unexpected response \(String(describing: response))")
        }
        return body
      }

      let all = try await ask([.init(name: "status")])
      let partitions = try #require(all.topics.first?.partitions)
      #expect(partitions.map(\.partition) == [0, 1])
      #expect(partitions.allSatisfy { $0.errorCode == .none && $0.role == .standalone })
      #expect(partitions.map(\.logEndOffset) == [0, 3])
      #expect(partitions.map(\.highWatermark) == [0, 3])
      #expect(partitions[1].durableEndOffset == 3)
      #expect(partitions[1].followers.isEmpty)

      // An empty request covers every hosted topic; unknown partitions are reported as such.
      let everything = try await ask([])
      #expect(everything.topics.map(\.name) == ["status"])
      let unknown = try await ask([
        .init(name: "status", partitions: [1, 7]), .init(name: "missing", partitions: [0]),
      ])
      #expect(unknown.topics.map(\.name) == ["status", "missing"])
      #expect(unknown.topics[0].partitions.map(\.errorCode) == [.none, .unknownTopicOrPartition])
      #expect(unknown.topics[1].partitions.first?.errorCode == .unknownTopicOrPartition)
      #expect(unknown.topics[1].partitions.first?.role == ReplicaStatusRole.none)
      await client.close()
    }
  }
}
