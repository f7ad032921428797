import StreamBusProtocol

/// The controller's decisions, as pure functions of (image, request, time).
///
/// Each operation returns the records to propose as one batch plus the response to send
/// once the batch commits; nothing here changes state. Run every operation against the
/// image that already includes the controller's own proposals still in flight, otherwise
/// two proposals in a row read the same allocators (two topics with one id).
/// ``BrokerSessions`` is the only mutable input: heartbeat times, in memory, leader-only.
public struct MetadataController: Sendable {
  public var limits: ControllerLimits

  public init(limits: ControllerLimits = ControllerLimits()) {
    self.limits = limits
  }

  // MARK: - Broker registration and sessions

  /// Registers a broker, which starts fenced. The same incarnation again is idempotent;
  /// a new incarnation replaces the old registration with a new, higher epoch, moving the
  /// old one's leaderships away in the same batch (that process is gone). A new incarnation
  /// with another data directory than the registered one also leaves every ISR, even as
  /// the last member: its log no longer holds what its membership vouched for, and were it
  /// elected, the partition would silently restart from an empty log.
  public func registerBroker(
    _ request: BrokerRegistrationRequest, image: MetadataImage, sessions: inout BrokerSessions,
    nowMs: Int64
  ) -> ControllerResult<BrokerRegistrationResponse> {
    func refuse(_ code: ErrorCode, _ message: String)
      -> ControllerResult<BrokerRegistrationResponse>
    {
      ControllerResult(
        records: [],
        response: BrokerRegistrationResponse(errorCode: code, message: message, brokerEpoch: -1))
    }
    if let violation = registrationViolation(request) {
      return refuse(.invalidRequest, violation)
    }
    let brokerID = request.brokerID
    var records: [MetadataRecord] = []
    if let existing = image.brokers[brokerID] {
      if existing.incarnationID == request.incarnationID {
        guard
          existing.endpoints == request.endpoints && existing.rack == request.rack
            && existing.capacity == request.capacity
            && existing.directoryID == request.directoryID
        else {
          return refuse(
            .duplicateBrokerRegistration,
            "broker \(brokerID) incarnation \(request.incarnationID) is already registered "
              + "with other endpoints, rack, capacity or data directory")
        }
        sessions.recordHeartbeat(brokerID, nowMs: nowMs)
        return ControllerResult(
          records: [],
          response: BrokerRegistrationResponse(errorCode: .none, brokerEpoch: existing.epoch))
      }
      let unknown = BrokerRegistrationRecord.unknownDirectoryID
      if existing.directoryID != unknown && request.directoryID != unknown
        && existing.directoryID != request.directoryID
      {
        records += LeaderElection.changesRemoving([brokerID], image: image, dataLost: true)
          .map(MetadataRecord.partitionChanged)
      } else if !existing.fenced {
        records += LeaderElection.changesRemoving([brokerID], image: image)
          .map(MetadataRecord.partitionChanged)
      }
    }
    guard image.nextBrokerEpoch < MetadataImage.idMax else {
      return refuse(.unknownServerError, "broker epochs are exhausted")
    }
    let brokerEpoch = image.nextBrokerEpoch
    records.append(
      .brokerRegistered(
        BrokerRegistrationRecord(
          brokerID: brokerID, incarnationID: request.incarnationID, brokerEpoch: brokerEpoch,
          endpoints: request.endpoints, rack: request.rack, capacity: request.capacity,
          directoryID: request.directoryID)))
    sessions.recordHeartbeat(brokerID, nowMs: nowMs)
    return ControllerResult(
      records: records,
      response: BrokerRegistrationResponse(errorCode: .none, brokerEpoch: brokerEpoch))
  }

  private func registrationViolation(_ request: BrokerRegistrationRequest) -> String? {
    if request.brokerID < 0 { return "broker id \(request.brokerID) is negative" }
    if request.directoryID < 0 {
      return "data directory id \(request.directoryID) is negative"
    }
    if request.endpoints.isEmpty { return "a broker needs at least one endpoint" }
    if request.endpoints.count > limits.endpointsMax {
      return "\(request.endpoints.count) endpoints; at most \(limits.endpointsMax)"
    }
    if Set(request.endpoints.map(\.name)).count != request.endpoints.count {
      return "endpoint names repeat"
    }
    for endpoint in request.endpoints {
      if endpoint.name.isEmpty || endpoint.name.utf8.count > limits.endpointNameBytesMax {
        return "endpoint name \"\(endpoint.name)\" must be 1...\(limits.endpointNameBytesMax) bytes"
      }
      if endpoint.host.isEmpty || endpoint.host.utf8.count > limits.hostBytesMax {
        return "endpoint \(endpoint.name) host must be 1...\(limits.hostBytesMax) bytes"
      }
      if !(1...65_535).contains(endpoint.port) {
        return "endpoint \(endpoint.name) port \(endpoint.port) is outside 1...65535"
      }
    }
    if let rack = request.rack, rack.isEmpty || rack.utf8.count > limits.rackBytesMax {
      return "rack must be 1...\(limits.rackBytesMax) bytes (or absent)"
    }
    if request.capacity.diskBytes < 0 { return "negative disk capacity" }
    return nil
  }

  /// A broker's heartbeat: refreshes its session; unfences it once it has applied the
  /// metadata up to its registration; on `wantShutdown` moves its leaderships away and
  /// tells it to go once it leads nothing.
  public func heartbeat(
    _ request: BrokerHeartbeatRequest, image: MetadataImage, sessions: inout BrokerSessions,
    nowMs: Int64
  ) -> ControllerResult<BrokerHeartbeatResponse> {
    guard let broker = image.brokers[request.brokerID] else {
      return ControllerResult(
        records: [],
        response: BrokerHeartbeatResponse(
          errorCode: .brokerIdNotRegistered,
          message: "broker \(request.brokerID) is not registered", isFenced: true,
          shouldShutdown: false))
    }
    guard broker.epoch == request.brokerEpoch else {
      return ControllerResult(
        records: [],
        response: BrokerHeartbeatResponse(
          errorCode: .staleBrokerEpoch,
          message:
            "broker \(request.brokerID) epoch \(request.brokerEpoch) is not the registered "
            + "epoch \(broker.epoch)",
          isFenced: true, shouldShutdown: false))
    }
    sessions.recordHeartbeat(broker.id, nowMs: nowMs)

    if request.wantShutdown {
      guard !broker.fenced else {
        return ControllerResult(
          records: [],
          response: BrokerHeartbeatResponse(errorCode: .none, isFenced: true, shouldShutdown: true))
      }
      var records: [MetadataRecord] = []
      if !broker.inControlledShutdown {
        records.append(.brokerControlledShutdown(brokerID: broker.id, brokerEpoch: broker.epoch))
      }
      records += LeaderElection.changesRemoving([broker.id], image: image)
        .map(MetadataRecord.partitionChanged)
      // Once this batch is applied the broker leads nothing: every leadership either moved
      // or went leaderless, so it may exit as soon as the answer arrives.
      return ControllerResult(
        records: records,
        response: BrokerHeartbeatResponse(errorCode: .none, isFenced: false, shouldShutdown: true))
    }

    if broker.fenced && !broker.inControlledShutdown
      && request.appliedMetadataOffset >= broker.registrationOffset
    {
      var records: [MetadataRecord] = [
        .brokerUnfenced(brokerID: broker.id, brokerEpoch: broker.epoch)
      ]
      let isEligible = { (id: BrokerID) in id == broker.id || image.isActive(id) }
      records += LeaderElection.changesElectingOffline(
        topics: image.topicsByID, isEligible: isEligible,
        relevant: { $0.replicas.contains(broker.id) }
      ).map(MetadataRecord.partitionChanged)
      return ControllerResult(
        records: records,
        response: BrokerHeartbeatResponse(errorCode: .none, isFenced: false, shouldShutdown: false))
    }
    return ControllerResult(
      records: [],
      response: BrokerHeartbeatResponse(
        errorCode: .none, isFenced: broker.fenced, shouldShutdown: broker.inControlledShutdown))
  }

  /// Fences every unfenced broker whose session expired and, in the same batch, moves its
  /// leaderships to other live ISR members (leader epoch + 1) and takes it out of ISRs.
  public func fenceExpired(
    image: MetadataImage, sessions: BrokerSessions, nowMs: Int64,
    sessionTimeoutMs: Int64 = BrokerSessions.sessionTimeoutMsDefault
  ) -> [MetadataRecord] {
    let expired = image.brokers.values
      .filter {
        !$0.fenced && sessions.isExpired($0.id, nowMs: nowMs, sessionTimeoutMs: sessionTimeoutMs)
      }
      .sorted { $0.id < $1.id }
    guard !expired.isEmpty else { return [] }
    var records = expired.map {
      MetadataRecord.brokerFenced(brokerID: $0.id, brokerEpoch: $0.epoch)
    }
    records += LeaderElection.changesRemoving(Set(expired.map(\.id)), image: image)
      .map(MetadataRecord.partitionChanged)
    return records
  }

  // MARK: - Topics

  /// Creates topics, each independently validated; all created ones go in one batch.
  /// `placementStart` rotates the placement (topic `i` of the request starts at
  /// `placementStart + i`); nil derives it from the new topic's id.
  public func createTopics(
    _ topics: [CreatableTopic], validateOnly: Bool, image: MetadataImage,
    placementStart: Int? = nil
  ) -> ControllerResult<[CreateTopicResult]> {
    let activeBrokers = image.activeBrokers
    var nameCounts: [String: Int] = [:]
    for topic in topics { nameCounts[topic.name, default: 0] += 1 }
    var nextTopicID = image.nextTopicID
    var records: [MetadataRecord] = []
    var results: [CreateTopicResult] = []
    for (index, topic) in topics.enumerated() {
      func refuse(_ code: ErrorCode, _ message: String) {
        results.append(CreateTopicResult(name: topic.name, errorCode: code, message: message))
      }
      if let violation = TopicNameRules.violation(topic.name) {
        refuse(.invalidTopic, violation)
        continue
      }
      if nameCounts[topic.name, default: 0] > 1 {
        refuse(.invalidRequest, "topic \"\(topic.name)\" appears more than once in the request")
        continue
      }
      if image.topicIDsByName[topic.name] != nil {
        refuse(.topicAlreadyExists, "topic \"\(topic.name)\" already exists")
        continue
      }
      let partitions = topic.partitions == -1 ? limits.defaultPartitions : topic.partitions
      guard partitions >= 1 && partitions <= limits.partitionsPerTopicMax else {
        refuse(
          .invalidPartitions,
          "\(topic.partitions) partitions; must be 1...\(limits.partitionsPerTopicMax)")
        continue
      }
      let replicationFactor =
        topic.replicationFactor == -1 ? limits.defaultReplicationFactor : topic.replicationFactor
      guard replicationFactor >= 1 else {
        refuse(
          .invalidReplicationFactor,
          "replication factor \(topic.replicationFactor); must be at least 1")
        continue
      }
      guard Int(replicationFactor) <= activeBrokers.count else {
        refuse(
          .invalidReplicationFactor,
          "replication factor \(replicationFactor) exceeds the \(activeBrokers.count) "
            + "unfenced brokers")
        continue
      }
      if let violation = TopicConfigRules.violation(
        topic.configs, replicationFactor: Int(replicationFactor))
      {
        refuse(.invalidConfig, violation)
        continue
      }
      if validateOnly {
        results.append(
          CreateTopicResult(
            name: topic.name, errorCode: .none, partitions: partitions,
            replicationFactor: replicationFactor))
        continue
      }
      guard nextTopicID < MetadataImage.idMax else {
        refuse(.unknownServerError, "topic ids are exhausted")
        continue
      }
      let topicID = nextTopicID
      nextTopicID += 1
      let assignment = ReplicaPlacement.place(
        partitionCount: Int(partitions), replicationFactor: Int(replicationFactor),
        brokers: activeBrokers, start: placementStart.map { $0 &+ index } ?? Int(topicID))
      records.append(.topicCreated(name: topic.name, topicID: topicID))
      for (key, value) in topic.configs.sorted(by: { $0.key < $1.key }) {
        records.append(.configChanged(resource: .topic(topicID), key: key, value: value))
      }
      for (partition, replicas) in assignment.enumerated() {
        records.append(
          .partitionCreated(
            PartitionRegistration(
              topicID: topicID, partition: PartitionIndex(partition), replicas: replicas,
              isr: replicas, leader: replicas[0])))
      }
      results.append(
        CreateTopicResult(
          name: topic.name, errorCode: .none, topicID: topicID, partitions: partitions,
          replicationFactor: replicationFactor))
    }
    return ControllerResult(records: records, response: results)
  }

  public func deleteTopics(_ names: [String], image: MetadataImage)
    -> ControllerResult<[DeleteTopicResult]>
  {
    var nameCounts: [String: Int] = [:]
    for name in names { nameCounts[name, default: 0] += 1 }
    var records: [MetadataRecord] = []
    var results: [DeleteTopicResult] = []
    for name in names {
      if nameCounts[name, default: 0] > 1 {
        results.append(
          DeleteTopicResult(
            name: name, errorCode: .invalidRequest,
            message: "topic \"\(name)\" appears more than once in the request"))
      } else if let topicID = image.topicIDsByName[name] {
        records.append(.topicDeleted(topicID: topicID))
        results.append(DeleteTopicResult(name: name, errorCode: .none))
      } else {
        results.append(
          DeleteTopicResult(
            name: name, errorCode: .unknownTopicOrPartition,
            message: "topic \"\(name)\" does not exist"))
      }
    }
    return ControllerResult(records: records, response: results)
  }

  /// Sets or removes topic config keys, all or nothing. Turning unclean leader election on
  /// elects leaders for the topic's leaderless partitions in the same batch.
  public func alterConfigs(topic name: String, changes: [ConfigEntryChange], image: MetadataImage)
    -> ControllerResult<AlterConfigsResponse>
  {
    func refuse(_ code: ErrorCode, _ message: String) -> ControllerResult<AlterConfigsResponse> {
      ControllerResult(
        records: [], response: AlterConfigsResponse(errorCode: code, message: message))
    }
    guard let topic = image.topic(named: name) else {
      return refuse(.unknownTopicOrPartition, "topic \"\(name)\" does not exist")
    }
    var seen = Set<String>()
    var configs = topic.configs
    for change in changes {
      guard seen.insert(change.key).inserted else {
        return refuse(.invalidConfig, "topic config \"\(change.key)\" is given twice")
      }
      guard TopicConfigRules.knownKeys.contains(change.key) else {
        return refuse(
          .invalidConfig,
          "unknown topic config \"\(change.key)\"; valid keys: "
            + TopicConfigRules.knownKeys.joined(separator: ", "))
      }
      configs[change.key] = change.value
    }
    if let violation = TopicConfigRules.violation(
      configs, replicationFactor: topic.replicationFactor)
    {
      return refuse(.invalidConfig, violation)
    }
    var records: [MetadataRecord] = []
    for change in changes where topic.configs[change.key] != change.value {
      records.append(
        .configChanged(resource: .topic(topic.id), key: change.key, value: change.value))
    }
    if !TopicConfigRules.allowsUncleanElection(topic.configs)
      && TopicConfigRules.allowsUncleanElection(configs)
    {
      var altered = topic
      altered.configs = configs
      records += LeaderElection.changesElectingOffline(
        topics: [altered], isEligible: image.isActive
      ).map(MetadataRecord.partitionChanged)
    }
    return ControllerResult(records: records, response: AlterConfigsResponse(errorCode: .none))
  }

  // MARK: - Partitions

  /// ISR changes proposed by partition leaders, checked optimistically: the broker epoch
  /// (the request is from the current incarnation), the leader epoch (it still leads) and
  /// the partition epoch (it saw the latest state) must all match.
  public func alterPartition(_ request: AlterPartitionRequest, image: MetadataImage)
    -> ControllerResult<AlterPartitionResponse>
  {
    guard let broker = image.brokers[request.brokerID] else {
      return ControllerResult(
        records: [],
        response: AlterPartitionResponse(
          errorCode: .brokerIdNotRegistered,
          message: "broker \(request.brokerID) is not registered"))
    }
    guard broker.epoch == request.brokerEpoch else {
      return ControllerResult(
        records: [],
        response: AlterPartitionResponse(
          errorCode: .staleBrokerEpoch,
          message:
            "broker \(request.brokerID) epoch \(request.brokerEpoch) is not the registered "
            + "epoch \(broker.epoch)"))
    }
    var working = image
    var records: [MetadataRecord] = []
    var results: [AlterPartitionResult] = []
    for item in request.partitions {
      let topicPartition = TopicPartition(topicID: item.topicID, partition: item.partition)
      guard let current = working.partition(topicPartition) else {
        results.append(
          AlterPartitionResult(
            topicID: item.topicID, partition: item.partition,
            errorCode: .unknownTopicOrPartition, message: "unknown partition \(topicPartition)"))
        continue
      }
      func refuse(_ code: ErrorCode, _ message: String) {
        results.append(result(current, code, message))
      }
      guard current.leader == request.brokerID else {
        refuse(
          .fencedLeaderEpoch,
          "broker \(request.brokerID) does not lead \(topicPartition) (leader \(current.leader) "
            + "at epoch \(current.leaderEpoch))")
        continue
      }
      guard item.leaderEpoch == current.leaderEpoch else {
        refuse(
          .fencedLeaderEpoch,
          "leader epoch \(item.leaderEpoch) of \(topicPartition) is not the current "
            + "\(current.leaderEpoch)")
        continue
      }
      guard item.partitionEpoch == current.partitionEpoch else {
        refuse(
          .invalidUpdateVersion,
          "partition epoch \(item.partitionEpoch) of \(topicPartition) is not the current "
            + "\(current.partitionEpoch)")
        continue
      }
      if let violation = isrViolation(item.newISR, of: current) {
        refuse(.invalidRequest, violation)
        continue
      }
      if let ineligible = item.newISR.first(where: {
        !current.isr.contains($0) && !working.isActive($0)
      }) {
        refuse(
          .ineligibleReplica,
          "broker \(ineligible) may not join the ISR of \(topicPartition): it is fenced, "
            + "shutting down or not registered")
        continue
      }
      if Set(item.newISR) == Set(current.isr) {
        results.append(result(current, .none, nil))
        continue
      }
      let change = PartitionChange(
        topicID: item.topicID, partition: item.partition,
        partitionEpoch: current.partitionEpoch + 1, isr: item.newISR)
      do {
        working = try working.applyingSpeculatively([.partitionChanged(change)])
      } catch {
        refuse(.unknownServerError, "controller produced an invalid change: \(error)")
        continue
      }
      records.append(.partitionChanged(change))
      results.append(result(working.partition(topicPartition) ?? current, .none, nil))
    }
    return ControllerResult(
      records: records, response: AlterPartitionResponse(errorCode: .none, partitions: results))
  }

  private func isrViolation(_ isr: [BrokerID], of partition: PartitionRegistration) -> String? {
    if Set(isr).count != isr.count { return "the proposed ISR \(isr) repeats a broker" }
    if let outsider = isr.first(where: { !partition.replicas.contains($0) }) {
      return "broker \(outsider) is not a replica of \(partition.topicPartition) "
        + "(replicas \(partition.replicas))"
    }
    if !isr.contains(partition.leader) {
      return "the proposed ISR \(isr) does not contain the leader \(partition.leader)"
    }
    return nil
  }

  private func result(_ partition: PartitionRegistration, _ code: ErrorCode, _ message: String?)
    -> AlterPartitionResult
  {
    AlterPartitionResult(
      topicID: partition.topicID, partition: partition.partition, errorCode: code,
      message: message, leader: partition.leader, leaderEpoch: partition.leaderEpoch,
      isr: partition.isr, partitionEpoch: partition.partitionEpoch)
  }

  /// Moves leadership to each partition's preferred (first) replica when it is in the ISR
  /// and active. nil means every partition of every topic.
  public func electPreferredLeaders(_ targets: [TopicNamePartition]?, image: MetadataImage)
    -> ControllerResult<[ElectLeaderResult]>
  {
    let targets =
      targets
      ?? image.topics.values.sorted { $0.name < $1.name }.flatMap { topic in
        topic.partitions.map { TopicNamePartition(topic: topic.name, partition: $0.partition) }
      }
    var working = image
    var records: [MetadataRecord] = []
    var results: [ElectLeaderResult] = []
    for target in targets {
      func answer(_ code: ErrorCode, _ message: String? = nil) {
        results.append(
          ElectLeaderResult(
            topic: target.topic, partition: target.partition, errorCode: code, message: message))
      }
      guard let topicID = working.topicIDsByName[target.topic],
        let partition = working.partition(
          TopicPartition(topicID: topicID, partition: target.partition))
      else {
        answer(.unknownTopicOrPartition, "unknown partition \(target.topic)/\(target.partition)")
        continue
      }
      let preferred = partition.preferredLeader
      if partition.leader == preferred {
        answer(.electionNotNeeded)
        continue
      }
      guard partition.isr.contains(preferred) && working.isActive(preferred) else {
        answer(
          .preferredLeaderNotAvailable,
          "preferred leader \(preferred) of \(target.topic)/\(target.partition) is not an "
            + "active ISR member (ISR \(partition.isr))")
        continue
      }
      guard let change = LeaderElection.change(of: partition, leader: preferred, isr: partition.isr)
      else {
        answer(.electionNotNeeded)
        continue
      }
      do {
        working = try working.applyingSpeculatively([.partitionChanged(change)])
      } catch {
        answer(.unknownServerError, "controller produced an invalid change: \(error)")
        continue
      }
      records.append(.partitionChanged(change))
      answer(.none)
    }
    return ControllerResult(records: records, response: results)
  }

  // MARK: - Producer ids

  /// Hands the broker the next block of producer ids.
  public func allocateProducerIds(
    brokerID: BrokerID, brokerEpoch: BrokerEpoch, image: MetadataImage
  ) -> ControllerResult<ProducerIdsResponse> {
    func refuse(_ code: ErrorCode, _ message: String) -> ControllerResult<ProducerIdsResponse> {
      ControllerResult(
        records: [],
        response: ProducerIdsResponse(
          errorCode: code, message: message, firstProducerID: -1, count: 0))
    }
    guard let broker = image.brokers[brokerID] else {
      return refuse(.brokerIdNotRegistered, "broker \(brokerID) is not registered")
    }
    guard broker.epoch == brokerEpoch else {
      return refuse(
        .staleBrokerEpoch,
        "broker \(brokerID) epoch \(brokerEpoch) is not the registered epoch \(broker.epoch)")
    }
    let count = limits.producerIDBlockSize
    let firstID = image.nextProducerID
    guard count > 0, firstID + Int64(count) <= MetadataImage.idMax else {
      return refuse(.unknownServerError, "producer ids are exhausted")
    }
    return ControllerResult(
      records: [.producerIdsAllocated(brokerID: brokerID, firstID: firstID, count: count)],
      response: ProducerIdsResponse(errorCode: .none, firstProducerID: firstID, count: count))
  }
}
