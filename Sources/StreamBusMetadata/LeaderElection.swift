/// Leader and ISR decisions shared by fencing, controlled shutdown, unfencing and config
/// changes. Only brokers for which `isEligible` holds may lead or stay in an ISR.
enum LeaderElection {
  /// The first eligible ISR member in replica order; failing that, when the topic allows
  /// unclean election, the first eligible replica (which becomes the whole ISR).
  static func elect(
    replicas: [BrokerID], isr: [BrokerID], allowUnclean: Bool,
    isEligible: (BrokerID) -> Bool
  ) -> (leader: BrokerID, isr: [BrokerID]) {
    if let leader = replicas.first(where: { isr.contains($0) && isEligible($0) }) {
      return (leader, isr)
    }
    if allowUnclean, let leader = replicas.first(where: isEligible) {
      return (leader, [leader])
    }
    return (noLeader, isr)
  }

  /// Changes that take `leaving` brokers out of every leadership and ISR: a new leader
  /// is elected where one of them led, and they leave ISRs, but an ISR never drops below
  /// one member: the last in-sync replica is the only one known to hold every committed
  /// record, so it stays (leaderless) until it returns or unclean election is allowed.
  ///
  /// Unless `dataLost`: brokers back without their data (another data directory) leave
  /// even as the last member. The ISR is then empty and the partition stays leaderless: no
  /// replica is known to hold every committed record, so only unclean election (where the
  /// topic allows it, an operator's decision) brings it back, not a silent restart from an
  /// empty log.
  static func changesRemoving(
    _ leaving: Set<BrokerID>, image: MetadataImage, dataLost: Bool = false
  ) -> [PartitionChange] {
    guard !leaving.isEmpty else { return [] }
    let isEligible = { (broker: BrokerID) in !leaving.contains(broker) && image.isActive(broker) }
    var changes: [PartitionChange] = []
    for topic in image.topicsByID {
      let allowUnclean = TopicConfigRules.allowsUncleanElection(topic.configs)
      for partition in topic.partitions {
        let leaderLeaves = leaving.contains(partition.leader)
        guard leaderLeaves || partition.isr.contains(where: leaving.contains) else { continue }
        var isr = partition.isr.filter { !leaving.contains($0) }
        if isr.isEmpty && !dataLost, let last = partition.isr.first {
          isr = [partition.isr.contains(partition.leader) ? partition.leader : last]
        }
        var leader = partition.leader
        if leaderLeaves {
          (leader, isr) = elect(
            replicas: partition.replicas, isr: isr, allowUnclean: allowUnclean,
            isEligible: isEligible)
        }
        if let change = change(of: partition, leader: leader, isr: isr) {
          changes.append(change)
        }
      }
    }
    return changes
  }

  /// Leaders for leaderless partitions of `topics` (with their configs as given) among
  /// `isEligible` brokers; `relevant` narrows the partitions looked at.
  static func changesElectingOffline(
    topics: [TopicImage], isEligible: (BrokerID) -> Bool,
    relevant: (PartitionRegistration) -> Bool = { _ in true }
  ) -> [PartitionChange] {
    var changes: [PartitionChange] = []
    for topic in topics {
      let allowUnclean = TopicConfigRules.allowsUncleanElection(topic.configs)
      for partition in topic.partitions where partition.isOffline && relevant(partition) {
        let (leader, isr) = elect(
          replicas: partition.replicas, isr: partition.isr, allowUnclean: allowUnclean,
          isEligible: isEligible)
        if leader != noLeader, let change = change(of: partition, leader: leader, isr: isr) {
          changes.append(change)
        }
      }
    }
    return changes
  }

  /// The record for moving `partition` to `leader` and `isr`, or nil when nothing changes.
  /// Any change bumps the partition epoch; a leader change also bumps the leader epoch.
  static func change(of partition: PartitionRegistration, leader: BrokerID, isr: [BrokerID])
    -> PartitionChange?
  {
    let leaderChanged = leader != partition.leader
    let isrChanged = isr != partition.isr
    guard leaderChanged || isrChanged else { return nil }
    return PartitionChange(
      topicID: partition.topicID, partition: partition.partition,
      partitionEpoch: partition.partitionEpoch + 1,
      leader: leaderChanged ? leader : nil,
      leaderEpoch: leaderChanged ? partition.leaderEpoch + 1 : nil,
      isr: isrChanged ? isr : nil)
  }
}
