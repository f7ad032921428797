import StreamBusRaft
import StreamBusRaftSimulation
import Testing

/// A small transcript DSL over `SimulatedCluster`, in the spirit of etcd's interaction
/// tests: each step reads like a line of a script ("campaign 1", "isolate 3", "tick 20",
/// "propose at 1", "stabilize"), the network is reliable and prompt unless a step says
/// otherwise, and every Ready is checked by the cluster's safety checkers as it happens.
final class Scenario {
  let cluster: SimulatedCluster
  private(set) var transcript: [String] = []

  init(
    nodes: Int, seed: UInt64 = 1, faults: RaftTestFaults = RaftTestFaults(),
    configure: @escaping @Sendable (inout RaftConfig) -> Void = { _ in }
  ) throws {
    cluster = try SimulatedCluster(
      nodeCount: nodes, seed: seed, raftFaults: faults, configure: configure)
    cluster.network.delayTicksMax = 1
  }

  private func note(_ line: String) { transcript.append(line) }

  /// "campaign N": node N starts an election, then the network settles. Voters that heard
  /// from a leader within the election timeout ignore it unless `overridingLeases` (which
  /// stands for "long enough has passed" in scripts that do not tick).
  @discardableResult
  func campaign(_ id: NodeID, overridingLeases: Bool = false) throws -> Scenario {
    note(overridingLeases ? "campaign \(id) overriding leases" : "campaign \(id)")
    try cluster.campaign(id, overridingLeases: overridingLeases)
    return try stabilize()
  }

  /// "stabilize": deliver every message until none are left (no time passes).
  @discardableResult
  func stabilize() throws -> Scenario {
    note("stabilize")
    try cluster.stabilize()
    return self
  }

  /// "tick N": N ticks of every running node, delivering due messages in between.
  @discardableResult
  func tick(_ count: Int) throws -> Scenario {
    note("tick \(count)")
    for _ in 0..<count { try cluster.tick() }
    return self
  }

  @discardableResult
  func isolate(_ id: NodeID) -> Scenario {
    note("isolate \(id)")
    cluster.isolate(id)
    return self
  }

  @discardableResult
  func partition(_ groups: [Set<NodeID>]) -> Scenario {
    note("partition \(groups.map { $0.sorted() })")
    cluster.partition(groups)
    return self
  }

  @discardableResult
  func heal() -> Scenario {
    note("heal")
    cluster.heal()
    return self
  }

  @discardableResult
  func crash(_ id: NodeID) -> Scenario {
    note("crash \(id)")
    cluster.crash(id)
    return self
  }

  @discardableResult
  func restart(_ id: NodeID) throws -> Scenario {
    note("restart \(id)")
    try cluster.restart(id)
    return self
  }

  /// "propose N at K": N writes at node K (without delivering anything).
  @discardableResult
  func propose(_ count: Int = 1, at id: NodeID, key: UInt8 = 0) throws -> Scenario {
    note("propose \(count) at \(id)")
    for _ in 0..<count { try cluster.write(at: id, key: key) }
    return self
  }

  func raft(_ id: NodeID) -> RaftNode { cluster.raft(id) }

  var leader: NodeID? { cluster.currentLeader() }

  func describe() -> String { transcript.joined(separator: " / ") }
}
