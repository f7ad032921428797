import StreamBusRaft
import StreamBusRaftSQLite
import Testing

/// The Raft core driven over SQLite storage the way a production driver does it (persist the
/// Ready in one transaction, then send, then apply, then advance), including restarts from the
/// database files and a follower that can only catch up through InstallSnapshot.
@Suite struct RaftNodeOnSQLiteTests {
  final class Server {
    let id: NodeID
    let path: String
    var storage: SQLiteRaftStorage
    var raft: RaftNode?
    /// The application's state: payloads of applied normal entries, in order.
    var applied: [[UInt8]] = []

    /// A founder of `voters`, bootstrapped by membership only or by `initialSnapshot`; with
    /// no voters and no snapshot a node that waits to be added.
    init(id: NodeID, path: String, voters: [NodeID], initialSnapshot: Snapshot? = nil) throws {
      self.id = id
      self.path = path
      storage = try SQLiteRaftStorage(
        path: path, clusterID: "it", nodeID: id,
        bootstrap: initialSnapshot == nil ? ConfState(voters: voters) : ConfState(),
        initialSnapshot: initialSnapshot)
    }

    func start() throws {
      raft = try RaftNode(config: RaftConfig(id: id, randomSeed: id), storage: storage)
      // The state machine restarts from the snapshot; entries after it are re-delivered.
      applied = try Server.decode(storage.snapshot().data)
    }

    func stop() throws {
      raft = nil
      storage.close()
      storage = try SQLiteRaftStorage(
        path: path, clusterID: "it", nodeID: id, bootstrap: ConfState(voters: [99]))
    }

    /// The application snapshot: a count and the payloads (each one byte in this test).
    static func encode(_ applied: [[UInt8]]) -> [UInt8] {
      applied.flatMap { $0 }
    }

    static func decode(_ data: [UInt8]) -> [[UInt8]] {
      data.map { [$0] }
    }
  }

  final class Cluster {
    let directory: TemporaryDirectory
    var servers: [NodeID: Server] = [:]

    /// With `bootstrapBySnapshot` every founder starts from the same snapshot at index 1
    /// carrying the membership (as RaftHost founders do).
    init(size: Int, bootstrapBySnapshot: Bool = false) throws {
      directory = try TemporaryDirectory()
      let ids = (1...NodeID(size)).map { $0 }
      let initialSnapshot =
        bootstrapBySnapshot
        ? Snapshot(
          metadata: SnapshotMetadata(index: 1, term: 1, confState: ConfState(voters: ids)),
          data: [])
        : nil
      for id in ids {
        servers[id] = try Server(
          id: id, path: directory.path("node-\(id).sqlite"), voters: ids,
          initialSnapshot: initialSnapshot)
        try servers[id]?.start()
      }
    }

    /// Starts a node with an empty database that waits to be added by the leader.
    func addJoiner(_ id: NodeID) throws -> Server {
      let server = try Server(id: id, path: directory.path("node-\(id).sqlite"), voters: [])
      try server.start()
      servers[id] = server
      return server
    }

    /// Proposes `change` at the leader and runs until it is applied.
    func changeMembership(_ change: ConfChange) throws {
      let current = try #require(leader())
      var raft = try #require(current.raft)
      try raft.proposeConfChange(change)
      current.raft = raft
      try run(rounds: 40)
    }

    func server(_ id: NodeID) throws -> Server {
      try #require(servers[id])
    }

    /// Handles Readies and delivers messages between running servers, ticking when quiet.
    func run(rounds: Int) throws {
      var messages: [Message] = []
      for _ in 0..<rounds {
        for server in servers.values.sorted(by: { $0.id < $1.id }) {
          guard var raft = server.raft else { continue }
          while raft.hasReady {
            let ready = try raft.ready()
            try server.storage.persist(
              hardState: ready.hardState, entries: ready.entries, snapshot: ready.snapshot)
            messages += ready.messages
            if let snapshot = ready.snapshot {
              server.applied = Server.decode(snapshot.data)
            }
            for entry in ready.committedEntries where entry.kind == .normal && !entry.data.isEmpty {
              server.applied.append(entry.data)
            }
            try raft.advance()
          }
          server.raft = raft
        }
        let delivering = messages
        messages = []
        for message in delivering {
          guard let target = servers[message.to], var raft = target.raft else { continue }
          try raft.step(message)
          target.raft = raft
        }
        if delivering.isEmpty {
          for server in servers.values {
            guard var raft = server.raft else { continue }
            try raft.tick()
            server.raft = raft
          }
        }
      }
    }

    func leader() -> Server? {
      servers.values.first { $0.raft?.role == .leader }
    }

    func close() {
      for server in servers.values { server.storage.close() }
    }
  }

  @Test func clusterReplicatesRestartsAndCatchesUpThroughSnapshot() throws {
    let cluster = try Cluster(size: 3)
    defer { cluster.close() }
    var first = try cluster.server(1)
    var raft = try #require(first.raft)
    try raft.campaign()
    first.raft = raft
    try cluster.run(rounds: 20)
    var leader = try #require(cluster.leader())

    func propose(_ payloads: ClosedRange<UInt8>) throws {
      for payload in payloads {
        var raft = try #require(leader.raft)
        _ = try raft.propose([payload])
        leader.raft = raft
      }
      try cluster.run(rounds: 30)
    }

    try propose(1...20)
    for server in cluster.servers.values {
      #expect(server.applied == (1...20).map { [$0] }, "server \(server.id)")
    }

    // Server 3 misses the next entries; the leader snapshots and compacts them away.
    let lagging = try cluster.server(3)
    try lagging.stop()
    try propose(21...60)
    let snapshotIndex = try #require(leader.raft?.appliedIndex)
    _ = try leader.storage.createSnapshot(
      at: snapshotIndex, confState: try #require(leader.raft?.confState),
      data: Server.encode(leader.applied))
    try leader.storage.compact(upTo: snapshotIndex)

    // Everybody restarts from the database files.
    for server in cluster.servers.values where server.raft != nil {
      try server.stop()
    }
    for server in cluster.servers.values {
      try server.start()
    }
    first = try cluster.server(1)
    raft = try #require(first.raft)
    try raft.campaign()
    first.raft = raft
    try cluster.run(rounds: 30)
    leader = try #require(cluster.leader())
    try propose(61...65)

    let expected = (1...65).map { [UInt8($0)] }
    for server in cluster.servers.values {
      #expect(server.applied == expected, "server \(server.id)")
    }
    // The lagging server installed the snapshot into its database.
    #expect(try lagging.storage.snapshot().metadata.index >= snapshotIndex)
    #expect(try lagging.storage.firstIndex() > snapshotIndex)

    // And all of it survives one more restart, read from disk only.
    let leaderLast = try leader.storage.lastIndex()
    for server in cluster.servers.values {
      try server.stop()
      #expect(try server.storage.lastIndex() == leaderLast)
      let (hardState, _) = try server.storage.initialState()
      #expect(hardState.commit == leaderLast)
      let start = max(try server.storage.firstIndex(), try leader.storage.firstIndex())
      #expect(
        try server.storage.entries(from: start, to: leaderLast + 1, maxBytes: .max)
          == leader.storage.entries(from: start, to: leaderLast + 1, maxBytes: .max))
    }
  }

  /// A node added later replicates the log of a cluster that never compacted. The founders'
  /// membership is not in any entry; it must still learn it (from the bootstrap snapshot it
  /// receives for position 1), or after promotion it would count itself as the only voter.
  @Test func joinerLearnsTheFoundersFromTheBootstrapSnapshot() throws {
    let cluster = try Cluster(size: 3, bootstrapBySnapshot: true)
    defer { cluster.close() }
    let first = try cluster.server(1)
    var raft = try #require(first.raft)
    try raft.campaign()
    first.raft = raft
    try cluster.run(rounds: 20)
    let leader = try #require(cluster.leader())
    // The first leader's no-op comes right after the bootstrap snapshot.
    let noOp = try leader.storage.entries(from: 2, to: 3, maxBytes: .max)
    #expect(noOp.map(\.data) == [[]])
    #expect(noOp.first?.term == leader.raft?.term)
    #expect(leader.raft?.term == 2)
    for payload: UInt8 in 1...5 {
      var raft = try #require(leader.raft)
      _ = try raft.propose([payload])
      leader.raft = raft
    }
    try cluster.run(rounds: 30)

    let joiner = try cluster.addJoiner(4)
    try cluster.changeMembership(ConfChange(kind: .addLearner, node: 4))
    #expect(joiner.raft?.confState == ConfState(voters: [1, 2, 3], learners: [4]))
    #expect(try joiner.storage.snapshot().metadata.index == 1)
    try cluster.changeMembership(ConfChange(kind: .addVoter, node: 4))
    #expect(joiner.raft?.confState == ConfState(voters: [1, 2, 3, 4]))
    #expect(joiner.applied == (1...5).map { [$0] })

    // With the three founders gone, one voter of four cannot win an election.
    for id: NodeID in [1, 2, 3] { try cluster.server(id).raft = nil }
    try cluster.run(rounds: 400)
    #expect(joiner.raft?.role != .leader)
    // It is a voter: only the missing quorum keeps it from leading.
    #expect(try #require(joiner.raft).isPromotable)
  }
}
