/// Rack-aware round-robin replica placement.
///
/// Brokers are laid out in a rack-alternating order (first broker of each rack, then the
/// second of each, ...). Partition `p`'s leader is the broker at `start + p` in that order,
/// so leaders of one topic differ by at most one per broker. Followers are taken walking
/// on from the leader, preferring racks not yet used by the partition, so a partition
/// spans `min(replicationFactor, racks)` racks. The walk's stride changes every full round
/// of brokers so follower sets vary too. A broker without a rack counts as a rack of its own.
public enum ReplicaPlacement {
  /// Broker ids in rack-alternating order; racks by name, brokers by id within a rack.
  public static func rackAlternatingOrder(_ brokers: [BrokerRegistration]) -> [BrokerID] {
    var byRack: [String: [BrokerID]] = [:]
    var rackless: [BrokerID] = []
    for broker in brokers {
      if let rack = broker.rack {
        byRack[rack, default: []].append(broker.id)
      } else {
        rackless.append(broker.id)
      }
    }
    var groups = byRack.sorted { $0.key < $1.key }.map { $0.value.sorted() }
    groups += rackless.sorted().map { [$0] }
    var order: [BrokerID] = []
    var round = 0
    while order.count < brokers.count {
      for group in groups where round < group.count {
        order.append(group[round])
      }
      round += 1
    }
    return order
  }

  /// Replica lists for `partitionCount` partitions over `brokers`, first replica = leader.
  /// Requires `1 <= replicationFactor <= brokers.count` (the controller checks it).
  public static func place(
    partitionCount: Int, replicationFactor: Int, brokers: [BrokerRegistration], start: Int
  ) -> [[BrokerID]] {
    precondition(
      replicationFactor >= 1 && replicationFactor <= brokers.count,
      "replication factor \(replicationFactor) with \(brokers.count) brokers")
    let order = rackAlternatingOrder(brokers)
    var rackKey: [BrokerID: String] = [:]
    for broker in brokers {
      rackKey[broker.id] = broker.rack.map { "rack:" + $0 } ?? "broker:\(broker.id)"
    }
    let brokerCount = order.count
    let startIndex = ((start % brokerCount) + brokerCount) % brokerCount
    var assignments: [[BrokerID]] = []
    assignments.reserveCapacity(partitionCount)
    for partition in 0..<partitionCount {
      let leaderIndex = (startIndex + partition) % brokerCount
      let leader = order[leaderIndex]
      var replicas = [leader]
      guard replicationFactor > 1 else {
        assignments.append(replicas)
        continue
      }
      let othersCount = brokerCount - 1
      let stride = (partition / brokerCount) % othersCount
      let candidates = (0..<othersCount).map { step in
        order[(leaderIndex + 1 + (stride + step) % othersCount) % brokerCount]
      }
      var usedRacks: Set<String> = [rackKey[leader] ?? ""]
      for candidate in candidates where replicas.count < replicationFactor {
        let rack = rackKey[candidate] ?? ""
        if !usedRacks.contains(rack) {
          replicas.append(candidate)
          usedRacks.insert(rack)
        }
      }
      for candidate in candidates where replicas.count < replicationFactor {
        if !replicas.contains(candidate) {
          replicas.append(candidate)
        }
      }
      assignments.append(replicas)
    }
    return assignments
  }
}
