import Foundation
import StreamBusClient
import StreamBusMetaClient
import StreamBusProtocol
import StreamBusRecords
import StreamBusTestSupport
import StreamBusTransport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// `databroker --metaservers ...`: real metaserver and broker processes on free ports.
@Suite(.serialized) struct ClusterBrokerTests {
  @Test func garbageFlagsGiveClearErrors() async throws {
    try await ProcessHarness.run { harness in
      let dataDirectory = try harness.makeDirectory("data").path
      let cases: [(arguments: [String], message: String)] = [
        (["--data-dir", dataDirectory], "pass --metaservers"),
        (
          ["--standalone", "--metaservers", "127.0.0.1:1", "--data-dir", dataDirectory],
          "mutually exclusive"
        ),
        (["--metaservers", "127.0.0.1:1", "--data-dir", dataDirectory], "--broker-id is required"),
        (
          ["--metaservers", "nonsense", "--broker-id", "1", "--data-dir", dataDirectory],
          "bad value for --metaservers"
        ),
        (
          ["--metaservers", "127.0.0.1:1", "--broker-id", "one", "--data-dir", dataDirectory],
          "bad value for --broker-id"
        ),
        (
          ["--standalone", "--broker-id", "1", "--data-dir", dataDirectory],
          "--broker-id is a cluster-mode setting"
        ),
        (
          [
            "--metaservers", "127.0.0.1:1", "--broker-id", "1", "--data-dir", dataDirectory,
            "--broker-session-timeout-ms", "100", "--broker-heartbeat-interval-ms", "200",
          ],
          "must be larger than"
        ),
      ]
      for testCase in cases {
        let result = try await harness.run(
          executableNamed: "databroker", arguments: testCase.arguments, timeoutMs: 10_000)
        #expect(!result.succeeded, "\(testCase.arguments) should fail")
        #expect(
          result.stderrText.contains(testCase.message),
          "\(testCase.arguments): stderr \(result.stderrText)")
      }
    }
  }

  /// A broker whose metaservers never answer keeps retrying registration, writes no ready
  /// file, and still stops promptly on SIGTERM.
  @Test func sigtermBeforeRegistrationExitsPromptly() async throws {
    try await ProcessHarness.run { harness in
      let dataDirectory = try harness.makeDirectory("data")
      let readyFile = harness.rootDirectory.appendingPathComponent("ready")
      let unused = try FreePorts.take(1)[0]
      let process = try harness.start(
        executableNamed: "databroker",
        arguments: [
          "--metaservers", "127.0.0.1:\(unused)", "--broker-id", "7", "--data-dir",
          dataDirectory.path, "--listen", "127.0.0.1:0", "--ready-file", readyFile.path,
        ])
      // Bound and serving, but not registered: no ready file.
      #expect(
        try await eventually(timeoutMs: 5_000) {
          process.stderrText().contains("[StreamBusTransport] listening")
        })
      try await Task.sleep(for: .milliseconds(300))
      #expect(!FileManager.default.fileExists(atPath: readyFile.path))
      process.signal(SIGTERM)
      let exit = try await process.waitForExit(timeoutMs: 5_000)
      #expect(exit == .exited(code: 0), "stderr:\n\(process.stderrText())")
    }
  }

  @Test func brokersRegisterServeMetadataAndForwardTopicAdmin() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await BrokerCluster.start(harness)
      let meta = cluster.meta.client()
      let described = try await meta.describeCluster()
      #expect(described.brokers.filter { !$0.fenced }.count == 3)

      let client = try await RawBrokerClient.connect(to: cluster.address(1))
      try await client.createTopic("orders", partitions: 2, replicationFactor: 3)
      let metadata = try await cluster.waitForLeaders(topic: "orders", partitions: 2)
      #expect(metadata.brokers.count == 3)
      let topic = try #require(metadata.topics.first)
      for partition in topic.partitions {
        #expect(Set(partition.replicas) == [1, 2, 3])
        #expect(partition.leaderEpoch >= 0)
      }
      // Every broker hosts every partition, marked with the topic id.
      for id in 1...3 {
        for partition in 0..<2 {
          let file = cluster.dataDirectory(id).appendingPathComponent(
            "orders-\(partition)/partition.metadata")
          #expect(
            try await eventually { FileManager.default.fileExists(atPath: file.path) },
            "broker \(id) lacks \(file.path)")
        }
      }
      // Unknown topic, and ListOffsets on a broker that does not lead.
      let (_, unknown) = try await client.send(.metadata(MetadataRequest(topics: ["nope"])))
      guard case .metadata(let unknownBody) = unknown else {
        Issue.record("no metadata answer")
        return
      }
      #expect(unknownBody.topics.first?.errorCode == .unknownTopicOrPartition)
      let leader = topic.partitions[0].leaderId
      let follower = Int(([1, 2, 3] as [Int32]).first { $0 != leader } ?? 1)
      let followerClient = try await RawBrokerClient.connect(to: cluster.address(follower))
      let (_, offsets) = try await followerClient.send(
        .listOffsets(
          ListOffsetsRequest(topics: [
            .init(
              name: "orders",
              partitions: [.init(partition: 0, timestamp: ListOffsetsRequest.latestTimestamp)])
          ])))
      guard case .listOffsets(let offsetsBody) = offsets else {
        Issue.record("no ListOffsets answer")
        return
      }
      #expect(offsetsBody.topics.first?.partitions.first?.errorCode == .notLeaderOrFollower)
      await followerClient.close()

      // Producer ids come from blocks the controller allocates: distinct across brokers.
      var producerIds: [Int64] = []
      for id in [1, 2, 1] {
        let broker = try await RawBrokerClient.connect(to: cluster.address(id))
        let (_, answer) = try await broker.send(.initProducerId(InitProducerIdRequest()))
        await broker.close()
        guard case .initProducerId(let body) = answer else {
          Issue.record("no InitProducerId answer from broker \(id)")
          return
        }
        #expect(body.errorCode == ErrorCode.none)
        producerIds.append(body.producerId)
      }
      #expect(producerIds.allSatisfy { $0 >= 0 })
      #expect(Set(producerIds).count == 3, "producer ids \(producerIds)")

      // DeleteTopics is forwarded; every broker deletes its replicas.
      let (_, deleted) = try await client.send(
        .deleteTopics(DeleteTopicsRequest(names: ["orders"], timeoutMs: 10_000)))
      guard case .deleteTopics(let deletedBody) = deleted else {
        Issue.record("no DeleteTopics answer")
        return
      }
      #expect(deletedBody.topics.first?.errorCode == ErrorCode.none)
      for id in 1...3 {
        let directory = cluster.dataDirectory(id).appendingPathComponent("orders-0")
        #expect(
          try await eventually { !FileManager.default.fileExists(atPath: directory.path) },
          "broker \(id) kept \(directory.path)")
      }
      await client.close()
      await meta.close()
    }
  }

  /// A follower's fetch carries its broker epoch; one from an incarnation that has since been
  /// replaced (a zombie process) must not count as the replica's progress.
  @Test func replicaFetchFromAReplacedIncarnationIsRefused() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await BrokerCluster.start(harness)
      let meta = cluster.meta.client()
      let client = try await RawBrokerClient.connect(to: cluster.address(1))
      try await client.createTopic("zombie", partitions: 1, replicationFactor: 3)
      await client.close()
      let metadata = try await cluster.waitForLeaders(topic: "zombie", partitions: 1)
      let leader = try #require(metadata.topics.first?.partitions.first?.leaderId)
      let follower = try #require(([1, 2, 3] as [Int32]).first { $0 != leader })
      let epoch = try #require(
        try await meta.describeCluster().brokers.first { $0.brokerID == follower }?.epoch)
      await meta.close()
      let toLeader = try await RawBrokerClient.connect(to: cluster.address(Int(leader)))
      func fetch(atBrokerEpoch brokerEpoch: Int64) async throws -> (ErrorCode, String?) {
        let (header, _) = try await toLeader.send(
          .fetch(
            FetchRequest(
              replicaId: follower, replicaBrokerEpoch: brokerEpoch, maxWaitMs: 0, minBytes: 1,
              maxBytes: 1 << 20,
              topics: [
                FetchRequest.Topic(
                  name: "zombie",
                  partitions: [
                    FetchRequest.Partition(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)
                  ])
              ])))
        return (header.errorCode, header.errorMessage)
      }
      let (stale, message) = try await fetch(atBrokerEpoch: epoch - 1)
      #expect(stale == .staleBrokerEpoch)
      #expect(message?.contains("epoch \(epoch)") == true, "\(String(describing: message))")
      #expect(try await fetch(atBrokerEpoch: epoch).0 == .none)
      await toLeader.close()
    }
  }

  @Test func leaderKillElectsNewLeaderAndLosesNothingAcknowledged() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await BrokerCluster.start(harness)
      let admin = try await RawBrokerClient.connect(to: cluster.address(1))
      try await admin.createTopic("failover", partitions: 1, replicationFactor: 3)
      await admin.close()
      var metadata = try await cluster.waitForLeaders(topic: "failover", partitions: 1)
      let firstLeader = Int(metadata.topics[0].partitions[0].leaderId)
      let log = AcknowledgementLog()

      // acks=all to the leader, then everything acknowledged is readable from it.
      // The leader may not have applied the new topic yet: retry like a client would.
      try await cluster.produce(
        to: firstLeader, topic: "failover", batches: 20, log: log, retryUntil: .seconds(5))
      let leaderClient = try await RawBrokerClient.connect(to: cluster.address(firstLeader))
      let firstRead = try await leaderClient.readAll(topic: "failover")
      await leaderClient.close()
      try verify(firstRead, log: log)
      // Followers copy it and stay in the ISR.
      metadata = try await cluster.waitForIsr(topic: "failover", count: 3, asking: firstLeader)

      try await cluster.kill(firstLeader)
      let survivor = firstLeader == 1 ? 2 : 1
      let killedAt = ContinuousClock.now
      metadata = try await cluster.waitForLeader(
        topic: "failover", asking: survivor, notIn: [Int32(firstLeader)])
      let newLeader = Int(metadata.topics[0].partitions[0].leaderId)
      try await cluster.produce(
        to: newLeader, topic: "failover", batches: 20, log: log, retryUntil: .seconds(10))
      let failover = ContinuousClock.now - killedAt
      let newLeaderClient = try await RawBrokerClient.connect(to: cluster.address(newLeader))
      let secondRead = try await newLeaderClient.readAll(topic: "failover")
      await newLeaderClient.close()
      try verify(secondRead, log: log)
      #expect(failover < .seconds(10), "failover took \(failover)")

      // The killed broker comes back, catches up and rejoins the ISR.
      try await cluster.startBroker(firstLeader)
      _ = try await cluster.waitForIsr(topic: "failover", count: 3, asking: newLeader)
    }
  }

  @Test func sigtermMovesLeadershipAwayBeforeExiting() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await BrokerCluster.start(harness)
      let admin = try await RawBrokerClient.connect(to: cluster.address(1))
      try await admin.createTopic("rolling", partitions: 1, replicationFactor: 3)
      await admin.close()
      let metadata = try await cluster.waitForLeaders(topic: "rolling", partitions: 1)
      let leader = Int(metadata.topics[0].partitions[0].leaderId)
      let log = AcknowledgementLog()
      try await cluster.produce(
        to: leader, topic: "rolling", batches: 10, log: log, retryUntil: .seconds(5))
      _ = try await cluster.waitForIsr(topic: "rolling", count: 3, asking: leader)

      let exit = try await cluster.terminate(leader)
      #expect(exit == .exited(code: 0))
      let stderr = cluster.stderr(leader)
      #expect(stderr.contains("controlled shutdown complete"), "stderr:\n\(stderr)")
      // The controller moved leadership before the broker left: another broker leads and
      // has everything acknowledged.
      let survivor = leader == 1 ? 2 : 1
      let moved = try await cluster.waitForLeader(
        topic: "rolling", asking: survivor, notIn: [Int32(leader)])
      let newLeader = Int(moved.topics[0].partitions[0].leaderId)
      try await cluster.produce(
        to: newLeader, topic: "rolling", batches: 10, log: log, retryUntil: .seconds(5))
      let reader = try await RawBrokerClient.connect(to: cluster.address(newLeader))
      let records = try await reader.readAll(topic: "rolling")
      await reader.close()
      try verify(records, log: log)
    }
  }

  /// The client library (idempotent producer, acks=all; consumer) across a `kill -9` of the
  /// leader: every acknowledged record is consumed exactly once, in send order.
  @Test func clientLibraryProducesAndConsumesAcrossLeaderKill() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await BrokerCluster.start(harness)
      let admin = try await RawBrokerClient.connect(to: cluster.address(1))
      try await admin.createTopic("library", partitions: 1, replicationFactor: 3)
      await admin.close()
      let metadata = try await cluster.waitForLeaders(topic: "library", partitions: 1)
      let leader = Int(metadata.topics[0].partitions[0].leaderId)
      let bootstrap = try (1...3).map { try HostPort(parsing: cluster.address($0)) }
      var config = ClientConfig(bootstrapBrokers: bootstrap, clientId: "cluster-test")
      config.retries = 50
      config.retryBackoffMs = 50
      config.retryBackoffMaxMs = 200
      config.requestTimeoutMs = 5_000
      let producer = Producer(config: config)
      var acknowledged: [(offset: Int64, sequence: Int)] = []
      // The second half is sent right after the leader died: the producer finds the dead
      // leader, refreshes its metadata and retries on the new one.
      for half in [0..<150, 150..<300] {
        if half.lowerBound > 0 {
          try await cluster.kill(leader)
        }
        var handles: [DeliveryHandle] = []
        for sequence in half {
          handles.append(
            try await producer.enqueue(
              topic: "library", value: SequencedValues.value(sequence), partition: 0))
        }
        for (sequence, handle) in zip(half, handles) {
          acknowledged.append((try await handle.value().offset, sequence))
        }
      }
      await producer.close()

      let consumer = Consumer(config: config)
      await consumer.assign([StreamBusClient.TopicPartition(topic: "library", partition: 0)])
      try await consumer.seekAll(to: .earliest)
      var consumed: [ConsumerRecord] = []
      let deadline = ContinuousClock.now + .seconds(10)
      while consumed.count < acknowledged.count && ContinuousClock.now < deadline {
        consumed += try await consumer.poll(maxWaitMs: 200)
      }
      await consumer.close()
      let sequences = consumed.compactMap { SequencedValues.sequence(of: $0.value) }
      #expect(sequences == Array(0..<300), "consumed \(sequences.count) records")
      for (offset, sequence) in acknowledged {
        #expect(
          consumed.first { $0.offset == offset }.flatMap { SequencedValues.sequence(of: $0.value) }
            == sequence)
      }
    }
  }

  /// A topic deleted while a broker is down leaves a directory there; the broker deletes
  /// it once its image has caught up after the restart.
  @Test func restartedBrokerDeletesPartitionsOfTopicsDeletedMeanwhile() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await BrokerCluster.start(harness)
      let admin = try await RawBrokerClient.connect(to: cluster.address(1))
      try await admin.createTopic("gone", partitions: 1, replicationFactor: 3)
      try await admin.createTopic("kept", partitions: 1, replicationFactor: 3)
      _ = try await cluster.waitForLeaders(topic: "gone", partitions: 1)
      let gone = cluster.dataDirectory(3).appendingPathComponent("gone-0")
      let kept = cluster.dataDirectory(3).appendingPathComponent("kept-0")
      #expect(try await eventually { FileManager.default.fileExists(atPath: gone.path) })
      #expect(try await eventually { FileManager.default.fileExists(atPath: kept.path) })

      #expect(try await cluster.terminate(3) == .exited(code: 0))
      let (_, deleted) = try await admin.send(
        .deleteTopics(DeleteTopicsRequest(names: ["gone"], timeoutMs: 10_000)))
      guard case .deleteTopics(let body) = deleted else {
        Issue.record("no DeleteTopics answer")
        return
      }
      #expect(body.topics.first?.errorCode == ErrorCode.none)
      await admin.close()
      #expect(FileManager.default.fileExists(atPath: gone.path))

      try await cluster.startBroker(3)
      #expect(
        try await eventually { !FileManager.default.fileExists(atPath: gone.path) },
        "the restarted broker kept \(gone.path)")
      #expect(FileManager.default.fileExists(atPath: kept.path))
    }
  }

  @Test func leaderWithoutQuorumStopsLeadingUntilHeartbeatsSucceed() async throws {
    try await ProcessHarness.run { harness in
      let cluster = try await BrokerCluster.start(harness)
      let admin = try await RawBrokerClient.connect(to: cluster.address(1))
      try await admin.createTopic("island", partitions: 1, replicationFactor: 3)
      await admin.close()
      let metadata = try await cluster.waitForLeaders(topic: "island", partitions: 1)
      let leader = Int(metadata.topics[0].partitions[0].leaderId)
      let log = AcknowledgementLog()
      try await cluster.produce(
        to: leader, topic: "island", batches: 5, log: log, retryUntil: .seconds(5))

      // Every metaserver stops: no heartbeat succeeds, so after the session timeout
      // (1.5 s) the leader refuses produce instead of acting on a possibly stale lease.
      for id in cluster.meta.allIDs {
        cluster.meta.signal(id, SIGSTOP)
      }
      let client = try await RawBrokerClient.connect(to: cluster.address(leader))
      var refusedWith: ErrorCode?
      let refused = try await eventually(timeoutMs: 6_000) {
        let result = try await client.produce(
          topic: "island", records: RecordBatches.batch(values: [Array("x".utf8)]), acks: 1,
          timeoutMs: 2_000)
        refusedWith = result.errorCode
        return result.errorCode == .notLeaderOrFollower
      }
      #expect(refused, "last answer \(String(describing: refusedWith))")
      for id in cluster.meta.allIDs {
        cluster.meta.signal(id, SIGCONT)
      }
      // With the quorum back the session recovers and a leader takes writes again. The
      // controller saw every session expire while it was stopped, so leadership may move
      // once the brokers heartbeat again: each attempt asks for the current leader.
      var lastFailure = "no attempt"
      let recovered = try await eventually(timeoutMs: 15_000) {
        let current = try await cluster.waitForLeaders(
          topic: "island", partitions: 1, asking: leader
        ).topics[0].partitions[0].leaderId
        do {
          try await cluster.produce(
            to: Int(current), topic: "island", batches: 5, log: log, retryUntil: .seconds(2))
          return true
        } catch {
          lastFailure = "\(error)"
          return false
        }
      }
      #expect(recovered, "no leader took writes after the quorum returned: \(lastFailure)")
      await client.close()
    }
  }

  /// Every acknowledged record is in `records` exactly once, at its acknowledged offset.
  private func verify(_ records: [Record], log: AcknowledgementLog) throws {
    var byOffset: [Int64: Int] = [:]
    for record in records {
      let sequence = try #require(SequencedValues.sequence(of: record.value))
      #expect(byOffset.updateValue(sequence, forKey: record.offset) == nil)
    }
    let sequences = byOffset.values
    #expect(Set(sequences).count == sequences.count, "a record appears twice")
    for (sequence, offset) in log.acknowledged {
      #expect(byOffset[offset] == sequence, "acknowledged record \(sequence) at \(offset) lost")
    }
  }
}

/// Polls `condition` every 20 ms for up to `timeoutMs`.
func eventually(timeoutMs: Int = 10_000, _ condition: () async throws -> Bool) async throws
  -> Bool
{
  let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
  while ContinuousClock.now < deadline {
    if try await condition() { return true }
    try await Task.sleep(for: .milliseconds(20))
  }
  return try await condition()
}

/// 3 metaservers and `brokerCount` databrokers in cluster mode, on free ports.
final class BrokerCluster: @unchecked Sendable {
  let harness: ProcessHarness
  let meta: MetaCluster
  private let lock = NSLock()
  private var ports: [Int: Int] = [:]
  private var directories: [Int: URL] = [:]
  private var processes: [Int: ManagedProcess] = [:]

  private init(harness: ProcessHarness, meta: MetaCluster) {
    self.harness = harness
    self.meta = meta
  }

  /// Real broker sessions: the controller fences a silent broker after 1.5 s.
  static func start(_ harness: ProcessHarness, brokerCount: Int = 3) async throws
    -> BrokerCluster
  {
    let meta = try await MetaCluster.start(
      harness, count: 3, extraArguments: ["--broker-session-timeout-ms", "1500"])
    let cluster = BrokerCluster(harness: harness, meta: meta)
    let ports = try FreePorts.take(brokerCount)
    for id in 1...brokerCount {
      let directory = try harness.makeDirectory("broker-\(id)")
      cluster.lock.withLock {
        cluster.ports[id] = ports[id - 1]
        cluster.directories[id] = directory
      }
    }
    try await withThrowingTaskGroup(of: Void.self) { group in
      for id in 1...brokerCount {
        group.addTask { try await cluster.startBroker(id) }
      }
      try await group.waitForAll()
    }
    return cluster
  }

  func address(_ id: Int) -> String { "127.0.0.1:\(lock.withLock { ports[id] ?? 0 })" }
  func dataDirectory(_ id: Int) -> URL {
    lock.withLock { directories[id] ?? URL(fileURLWithPath: "/nonexistent") }
  }

  /// Starts (or restarts) broker `id` and waits for its ready file (registered, unfenced).
  func startBroker(_ id: Int, timeoutMs: Int = 20_000) async throws {
    let directory = dataDirectory(id)
    let readyFile = directory.deletingLastPathComponent().appendingPathComponent(
      "broker-\(id).ready")
    try? FileManager.default.removeItem(at: readyFile)
    let metaservers = meta.allIDs.map { meta.node($0).apiAddress }.joined(separator: ",")
    let process = try harness.start(
      executableNamed: "databroker",
      arguments: [
        "--metaservers", metaservers, "--broker-id", "\(id)", "--data-dir", directory.path,
        "--listen", address(id), "--ready-file", readyFile.path, "--log-level", "info",
      ], label: "databroker-\(id)")
    lock.withLock { processes[id] = process }
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    while !FileManager.default.fileExists(atPath: readyFile.path) {
      if let exit = process.exit {
        throw HarnessError(
          "databroker-\(id) exited (\(exit)) before it was ready; stderr:\n"
            + process.stderrTail())
      }
      guard ContinuousClock.now < deadline else {
        throw HarnessError(
          "databroker-\(id) not ready within \(timeoutMs) ms; stderr:\n" + process.stderrTail())
      }
      try await Task.sleep(for: .milliseconds(20))
    }
  }

  func kill(_ id: Int) async throws {
    guard let process = lock.withLock({ processes[id] }) else { return }
    process.signal(SIGKILL)
    try await process.waitForExit(timeoutMs: 10_000)
  }

  /// SIGTERM, then the exit status.
  func terminate(_ id: Int, timeoutMs: Int = 20_000) async throws -> ProcessExit {
    guard let process = lock.withLock({ processes[id] }) else {
      throw HarnessError("broker \(id) was never started")
    }
    process.signal(SIGTERM)
    return try await process.waitForExit(timeoutMs: timeoutMs)
  }

  func stderr(_ id: Int) -> String {
    lock.withLock { processes[id] }?.stderrText() ?? ""
  }

  func metadata(topic: String, asking id: Int) async throws -> MetadataResponse {
    let client = try await RawBrokerClient.connect(to: address(id), requestTimeoutMs: 5_000)
    defer { Task { await client.close() } }
    let (_, response) = try await client.send(.metadata(MetadataRequest(topics: [topic])))
    guard case .metadata(let body) = response else {
      throw HarnessError("no Metadata answer from broker \(id)")
    }
    return body
  }

  /// Waits until broker `asking` reports a leader for each of the topic's partitions.
  func waitForLeaders(topic: String, partitions: Int, asking id: Int = 1) async throws
    -> MetadataResponse
  {
    var last: MetadataResponse?
    let found = try await eventually {
      let metadata = try await self.metadata(topic: topic, asking: id)
      last = metadata
      guard let described = metadata.topics.first, described.errorCode == .none else {
        return false
      }
      return described.partitions.count == partitions
        && described.partitions.allSatisfy { $0.leaderId >= 0 }
    }
    guard found, let last else {
      throw HarnessError("\(topic) has no leaders; last metadata: \(String(describing: last))")
    }
    return last
  }

  /// Waits until partition 0 has a leader outside `notIn`, as broker `id` reports it.
  func waitForLeader(topic: String, asking id: Int, notIn excluded: Set<Int32>) async throws
    -> MetadataResponse
  {
    var last: MetadataResponse?
    let found = try await eventually {
      let metadata = try await self.metadata(topic: topic, asking: id)
      last = metadata
      guard let partition = metadata.topics.first?.partitions.first else { return false }
      return partition.leaderId >= 0 && !excluded.contains(partition.leaderId)
    }
    guard found, let last else {
      throw HarnessError("no new leader of \(topic); last: \(String(describing: last))")
    }
    return last
  }

  /// Waits until partition 0's ISR has `count` members.
  func waitForIsr(topic: String, count: Int, asking id: Int, timeoutMs: Int = 15_000)
    async throws -> MetadataResponse
  {
    var last: MetadataResponse?
    let found = try await eventually(timeoutMs: timeoutMs) {
      let metadata = try await self.metadata(topic: topic, asking: id)
      last = metadata
      return metadata.topics.first?.partitions.first?.isr.count == count
    }
    guard found, let last else {
      throw HarnessError(
        "ISR of \(topic) never reached \(count); last: \(String(describing: last))")
    }
    return last
  }

  /// acks=all batches of 10 sequenced records to partition 0 on broker `id`; with
  /// `retryUntil`, refused or failed sends are retried until then (a failover in progress).
  func produce(
    to id: Int, topic: String, batches: Int, log: AcknowledgementLog,
    retryUntil: Duration = .zero
  ) async throws {
    let deadline = ContinuousClock.now + retryUntil
    var client = try? await RawBrokerClient.connect(to: address(id), requestTimeoutMs: 5_000)
    var sent = 0
    while sent < batches {
      let sequences = log.reserve(10)
      let batch = RecordBatches.batch(values: sequences.map { SequencedValues.value($0) })
      var lastError = "not connected"
      if let connected = client {
        do {
          let result = try await connected.produce(
            topic: topic, records: batch, acks: -1, timeoutMs: 5_000)
          if result.errorCode == .none {
            log.acknowledge(sequences, baseOffset: result.baseOffset)
            sent += 1
            continue
          }
          lastError = "\(result.errorCode) \(result.errorMessage ?? "")"
        } catch {
          lastError = "\(error)"
          await connected.close()
          client = nil
        }
      }
      guard ContinuousClock.now < deadline else {
        throw HarnessError("acks=all produce to broker \(id) failed: \(lastError)")
      }
      try await Task.sleep(for: .milliseconds(50))
      if client == nil {
        client = try? await RawBrokerClient.connect(to: address(id), requestTimeoutMs: 5_000)
      }
    }
    await client?.close()
  }
}
