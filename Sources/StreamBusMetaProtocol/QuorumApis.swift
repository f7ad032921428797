import StreamBusProtocol

// Quorum administration. Membership changes answer with the outcome in the response header
// (NOT_LEADER, RECONFIGURATION_IN_PROGRESS, INVALID_REQUEST, ...); their bodies are empty
// except TransferLeadership's.

// MARK: - QuorumStatus (1116)

public struct QuorumStatusRequest: MetaRequestBody {
  public typealias Response = QuorumStatusResponse
  public static let apiKey = MetaApiKey.quorumStatus

  public init() {}

  public init(from reader: inout WireReader, version: Int16) throws {}

  public func encode(into writer: inout WireWriter, version: Int16) {}
}

/// A voter or learner as the leader tracks it.
public struct QuorumMember: Sendable, Hashable {
  public var nodeID: Int32
  /// "host:port" of its Raft peer listener.
  public var raftAddress: String
  /// "host:port" of its API listener ("" when not known).
  public var apiAddress: String
  /// Highest log index known to be replicated on the member.
  public var matchIndex: Int64
  /// Leader's last log index minus `matchIndex`.
  public var lag: Int64
  /// Milliseconds since the leader last heard from the member; -1 when never (0 for the
  /// leader itself).
  public var lastContactMs: Int64

  public init(
    nodeID: Int32, raftAddress: String, apiAddress: String, matchIndex: Int64, lag: Int64,
    lastContactMs: Int64
  ) {
    self.nodeID = nodeID
    self.raftAddress = raftAddress
    self.apiAddress = apiAddress
    self.matchIndex = matchIndex
    self.lag = lag
    self.lastContactMs = lastContactMs
  }

  static let bytesMin = 4 + 2 * MetaBytesMin.string + 8 + 8 + 8

  init(from reader: inout WireReader) throws {
    nodeID = try reader.readInt32("quorumMember.nodeID")
    raftAddress = try reader.readString("quorumMember.raftAddress")
    apiAddress = try reader.readString("quorumMember.apiAddress")
    matchIndex = try reader.readInt64("quorumMember.matchIndex")
    lag = try reader.readInt64("quorumMember.lag")
    lastContactMs = try reader.readInt64("quorumMember.lastContactMs")
  }

  func encode(into writer: inout WireWriter) {
    writer.writeInt32(nodeID)
    writer.writeString(raftAddress)
    writer.writeString(apiAddress)
    writer.writeInt64(matchIndex)
    writer.writeInt64(lag)
    writer.writeInt64(lastContactMs)
  }
}

/// Answered by the leader only (followers do not know match indexes): NOT_LEADER elsewhere.
public struct QuorumStatusResponse: WireBody {
  public static let apiKey = MetaApiKey.quorumStatus

  public var leaderID: Int32
  public var term: Int64
  public var commitIndex: Int64
  /// Last index applied to the leader's metadata image.
  public var appliedIndex: Int64
  /// The leader is one of the voters.
  public var voters: [QuorumMember]
  public var learners: [QuorumMember]

  public init(
    leaderID: Int32, term: Int64, commitIndex: Int64, appliedIndex: Int64,
    voters: [QuorumMember], learners: [QuorumMember]
  ) {
    self.leaderID = leaderID
    self.term = term
    self.commitIndex = commitIndex
    self.appliedIndex = appliedIndex
    self.voters = voters
    self.learners = learners
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    leaderID = try reader.readInt32("quorumStatusResponse.leaderID")
    term = try reader.readInt64("quorumStatusResponse.term")
    commitIndex = try reader.readInt64("quorumStatusResponse.commitIndex")
    appliedIndex = try reader.readInt64("quorumStatusResponse.appliedIndex")
    voters = try reader.readArray(
      "quorumStatusResponse.voters", elementBytesMin: QuorumMember.bytesMin
    ) { try QuorumMember(from: &$0) }
    learners = try reader.readArray(
      "quorumStatusResponse.learners", elementBytesMin: QuorumMember.bytesMin
    ) { try QuorumMember(from: &$0) }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt32(leaderID)
    writer.writeInt64(term)
    writer.writeInt64(commitIndex)
    writer.writeInt64(appliedIndex)
    writer.writeArray(voters) { $1.encode(into: &$0) }
    writer.writeArray(learners) { $1.encode(into: &$0) }
  }
}

// MARK: - AddLearner (1117)

/// Adds a node that replicates the log without voting (started with `--join`).
public struct AddLearnerRequest: MetaRequestBody {
  public typealias Response = AddLearnerResponse
  public static let apiKey = MetaApiKey.addLearner

  public var nodeID: Int32
  /// "host:port" of the new node's Raft peer listener.
  public var raftAddress: String
  /// "host:port" of the new node's API listener (travels in the membership change so
  /// NOT_LEADER answers can name it once it leads).
  public var apiAddress: String

  public init(nodeID: Int32, raftAddress: String, apiAddress: String) {
    self.nodeID = nodeID
    self.raftAddress = raftAddress
    self.apiAddress = apiAddress
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    nodeID = try reader.readInt32("addLearner.nodeID")
    raftAddress = try reader.readString("addLearner.raftAddress")
    apiAddress = try reader.readString("addLearner.apiAddress")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt32(nodeID)
    writer.writeString(raftAddress)
    writer.writeString(apiAddress)
  }
}

public struct AddLearnerResponse: WireBody {
  public static let apiKey = MetaApiKey.addLearner

  public init() {}

  public init(from reader: inout WireReader, version: Int16) throws {}

  public func encode(into writer: inout WireWriter, version: Int16) {}
}

// MARK: - AddVoter (1118)

/// Promotes a learner to voter.
public struct AddVoterRequest: MetaRequestBody {
  public typealias Response = AddVoterResponse
  public static let apiKey = MetaApiKey.addVoter

  public var nodeID: Int32

  public init(nodeID: Int32) {
    self.nodeID = nodeID
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    nodeID = try reader.readInt32("addVoter.nodeID")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt32(nodeID)
  }
}

public struct AddVoterResponse: WireBody {
  public static let apiKey = MetaApiKey.addVoter

  public init() {}

  public init(from reader: inout WireReader, version: Int16) throws {}

  public func encode(into writer: inout WireWriter, version: Int16) {}
}

// MARK: - RemoveVoter (1119)

/// Removes a voter or a learner from the quorum.
public struct RemoveVoterRequest: MetaRequestBody {
  public typealias Response = RemoveVoterResponse
  public static let apiKey = MetaApiKey.removeVoter

  public var nodeID: Int32

  public init(nodeID: Int32) {
    self.nodeID = nodeID
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    nodeID = try reader.readInt32("removeVoter.nodeID")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt32(nodeID)
  }
}

public struct RemoveVoterResponse: WireBody {
  public static let apiKey = MetaApiKey.removeVoter

  public init() {}

  public init(from reader: inout WireReader, version: Int16) throws {}

  public func encode(into writer: inout WireWriter, version: Int16) {}
}

// MARK: - TransferLeadership (1120)

public struct TransferLeadershipRequest: MetaRequestBody {
  public typealias Response = TransferLeadershipResponse
  public static let apiKey = MetaApiKey.transferLeadership

  /// -1: any caught-up voter.
  public var targetID: Int32

  public init(targetID: Int32) {
    self.targetID = targetID
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    targetID = try reader.readInt32("transferLeadership.targetID")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt32(targetID)
  }
}

public struct TransferLeadershipResponse: WireBody {
  public static let apiKey = MetaApiKey.transferLeadership

  /// The leader after the transfer (answered once it took over).
  public var newLeaderID: Int32

  public init(newLeaderID: Int32) {
    self.newLeaderID = newLeaderID
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    newLeaderID = try reader.readInt32("transferLeadershipResponse.newLeaderID")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt32(newLeaderID)
  }
}
