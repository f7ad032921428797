import StreamBusRaft
import StreamBusRaftSQLite
import StreamBusTransport
import Testing

@testable import StreamBusRaftHost

/// The initial membership is replicated state: founders start from one bootstrap snapshot
/// at index 1, so a node that joins later learns the founders even when the leader never
/// compacted its log.
@Suite struct RaftHostBootstrapTests {
  @Test func foundersWriteByteIdenticalBootstrapSnapshots() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let ports = try await freePorts(3)
    let members = (1...3).map { offset in
      (
        NodeID(offset),
        PeerAddresses(
          raftAddress: HostPort(host: "127.0.0.1", port: ports[offset - 1]),
          apiAddress: HostPort(host: "127.0.0.1", port: 21_000 + offset))
      )
    }
    // The same cluster as dictionaries built differently, so any dependence on iteration
    // order would show.
    var forward: [NodeID: PeerAddresses] = [:]
    for (id, addresses) in members { forward[id] = addresses }
    var backward: [NodeID: PeerAddresses] = [:]
    backward.reserveCapacity(64)
    for (id, addresses) in members.reversed() { backward[id] = addresses }
    #expect(forward == backward)

    for (id, initialCluster) in [(NodeID(1), forward), (NodeID(2), backward)] {
      var configuration = RaftHostConfiguration(
        nodeID: id, clusterID: "founders", databasePath: directory.path("node-\(id).sqlite"),
        raftListen: initialCluster[id]?.raftAddress ?? HostPort(host: "127.0.0.1", port: 0))
      configuration.initialCluster = initialCluster
      let host = try await RaftHost.start(
        configuration: configuration, stateMachine: KeyValueStateMachine(),
        logger: testLogger("founder-\(id)"))
      let status = host.status()
      #expect(status.snapshotIndex == 1)
      #expect(status.commitIndex == 1 && status.appliedIndex == 1)
      #expect(status.voters.map(\.id) == [1, 2, 3])
      await host.shutdown()
    }

    var encodings: [[UInt8]] = []
    for id: NodeID in [1, 2] {
      let storage = try SQLiteRaftStorage(
        path: directory.path("node-\(id).sqlite"), clusterID: "founders", nodeID: id)
      defer { storage.close() }
      let snapshot = try storage.snapshot()
      #expect(
        snapshot.metadata
          == SnapshotMetadata(index: 1, term: 1, confState: .init(voters: [1, 2, 3])))
      #expect(try storage.firstIndex() == 2)
      let envelope = try SnapshotEnvelope(decoding: snapshot.data)
      #expect(envelope.addressBook == AddressBook(forward))
      #expect(envelope.stateMachineData == (try KeyValueStateMachine().snapshot()))
      encodings.append(snapshot.encoded())
    }
    #expect(encodings[0] == encodings[1])
    #expect(
      encodings[0]
        == BootstrapSnapshot.make(initialCluster: forward, initialState: []).encoded())
  }

  @Test func readingFromTheStartSkipsTheBootstrapSnapshot() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var configuration = RaftHostConfiguration(
      nodeID: 1, clusterID: "solo", databasePath: directory.path("node.sqlite"),
      raftListen: HostPort(host: "127.0.0.1", port: 0))
    configuration.initialCluster = [
      1: PeerAddresses(raftAddress: HostPort(host: "127.0.0.1", port: 0))
    ]
    let machine = KeyValueStateMachine()
    let host = try await RaftHost.start(
      configuration: configuration, stateMachine: machine, logger: testLogger("solo"))
    do {
      try await eventually("single node to lead") { host.status().isLeaderReady }
      let first = try await host.propose(KeyValueStateMachine.command("a", "1"))
      let second = try await host.propose(KeyValueStateMachine.command("b", "2"))
      // Index 1 is the bootstrap snapshot, 2 the first leader's no-op.
      #expect(first == 3 && second == 4)
      let read = try await host.readCommitted(after: 0, maxBytes: 1 << 20)
      guard case .entries(let entries, let through) = read else {
        Issue.record("expected entries, got \(read)")
        await host.shutdown()
        return
      }
      #expect(entries.map(\.index) == [first, second])
      #expect(through == second)
      // The state machine started empty and was never asked to restore the bootstrap.
      #expect(machine.restoredFrom.isEmpty)
    } catch {
      await host.shutdown()
      throw error
    }
    await host.shutdown()
  }

  /// The scenario of the bug: snapshots effectively off, so the joiner gets the log by
  /// replication; the only snapshot it can receive is the bootstrap one.
  @Test func promotedJoinerLearnsTheFoundersAndCannotLeadAlone() async throws {
    let cluster = try await TestCluster.start(voters: 3) {
      $0.snapshotThresholdEntries = 1_000_000
    }
    do {
      let leaderID = try await cluster.awaitLeader()
      let leader = try cluster.host(leaderID)
      var expected: [String: String] = [:]
      for number in 0..<5 {
        try await cluster.write("before\(number)", "\(number)")
        expected["before\(number)"] = "\(number)"
      }

      let joiner = try await cluster.startJoiningNode(4)
      #expect(joiner.status().voters.isEmpty)
      try await leader.addLearner(4, addresses: try #require(cluster.addresses[4]))
      try await cluster.awaitValues(expected, on: [4])
      try await eventually("the joiner to know the founders") {
        let status = joiner.status()
        return status.voters.map(\.id) == [1, 2, 3] && status.learners.map(\.id) == [4]
          && status.voters.allSatisfy { $0.addresses == cluster.addresses[$0.id] }
      }
      // Nothing was compacted: the joiner got the bootstrap snapshot, then the log.
      #expect(leader.status().snapshotIndex == 1)
      #expect(joiner.status().snapshotIndex == 1)
      #expect(try cluster.machine(4).restoredFrom.isEmpty)

      try await eventually("the learner to catch up") {
        leader.status().learners.first?.lag == 0
      }
      try await leader.promote(4)
      try await eventually("the joiner to see itself promoted") {
        joiner.status().voters.map(\.id) == [1, 2, 3, 4]
      }
      try await cluster.write("with-four", "yes")
      expected["with-four"] = "yes"
      try await cluster.awaitValues(expected, on: [4])

      for id: NodeID in [1, 2, 3] { await cluster.stopNode(id, graceful: false) }
      // Several election timeouts (300-600 ms each): one voter of four must not lead.
      let deadline = ContinuousClock.now + .milliseconds(2_500)
      while ContinuousClock.now < deadline {
        let status = joiner.status()
        #expect(!status.isLeader, "node 4 elected itself in term \(status.term)")
        if status.isLeader { break }
        try await Task.sleep(for: .milliseconds(20))
      }
      let status = joiner.status()
      #expect(status.voters.map(\.id) == [1, 2, 3, 4])
      #expect(status.stopReason == nil)
    } catch {
      await cluster.shutdown()
      throw error
    }
    await cluster.shutdown()
  }
}
