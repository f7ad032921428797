import Logging
import NIOConcurrencyHelpers
import StreamBusMetadata
import StreamBusProtocol
import StreamBusRaft
import StreamBusRaftHost

/// Why a controller operation did not get its normal answer.
public struct ControllerFailure: Error, Sendable, CustomStringConvertible {
  public var errorCode: ErrorCode
  public var message: String
  /// For NOT_LEADER: the leader's API address when known.
  public var leaderID: UInt64?
  public var leaderAPIAddress: String?

  public init(
    _ errorCode: ErrorCode, _ message: String, leaderID: UInt64? = nil,
    leaderAPIAddress: String? = nil
  ) {
    self.errorCode = errorCode
    self.message = message
    self.leaderID = leaderID
    self.leaderAPIAddress = leaderAPIAddress
  }

  public var description: String { "\(errorCode): \(message)" }
}

/// Where controller batches go: the Raft log (a `RaftHost`), or a fake in unit tests.
public protocol ControllerLog: Sendable {
  /// Appends one batch; returns its index once committed and applied locally. Refused
  /// unless this node still leads in `expectedTerm` (the term the batch was decided in).
  func propose(_ data: [UInt8], expectedTerm: Term?) async throws -> LogIndex
}

extension RaftHost: ControllerLog {}

/// The controller of the current Raft term on the leader: queues operations, computes their
/// records with the pure `MetadataController` against the applied image, proposes the
/// records of many operations as one Raft entry (a "round"), and answers each operation once
/// that entry is committed and applied.
///
/// Rounds run one at a time, so each round starts from an image that already holds every
/// earlier round: no speculation across uncommitted entries. Within a round, operations see
/// the effect of the ones before them (a scratch image), so two CreateTopics in one round
/// get distinct ids. Broker heartbeats have a lane of their own that every round empties
/// first, and the number of bulk operations per round is bounded, so heartbeats never wait
/// behind a burst of admin work for more than one round. The fence check runs at the start
/// of every round and at least every `fenceCheckIntervalMs`.
public actor ControllerRunner {
  /// One queued operation, type-erased: `compute` runs on the controller with the scratch
  /// image and returns the records to propose; `finish` delivers the outcome of its round.
  private struct Operation {
    let name: String
    let compute: @Sendable (MetadataImage, inout BrokerSessions, Int64) -> [MetadataRecord]
    let finish: @Sendable (Result<Void, ControllerFailure>) -> Void
  }

  public struct Settings: Sendable {
    public var nodeID: UInt64
    /// The Raft term this controller leads in; its proposals are refused in any other.
    public var term: Term?
    public var sessionTimeoutMs: Int64
    public var fenceCheckIntervalMs: Int64
    /// Bulk (non-heartbeat) operations per round.
    public var bulkOperationsPerRoundMax: Int = 64
    /// Records per round; a round stops taking bulk operations beyond it (a single larger
    /// operation still goes alone).
    public var recordsPerRoundMax: Int = 50_000
    /// Operations waiting; beyond it new ones are refused at once.
    public var queuedOperationsMax: Int = 10_000

    public init(nodeID: UInt64, sessionTimeoutMs: Int64, fenceCheckIntervalMs: Int64) {
      self.nodeID = nodeID
      self.sessionTimeoutMs = sessionTimeoutMs
      self.fenceCheckIntervalMs = fenceCheckIntervalMs
    }
  }

  public let settings: Settings
  public let controller: MetadataController
  private let log: any ControllerLog
  private let stateMachine: MetadataStateMachine
  private let logger: Logger
  private let clock = ContinuousClock()
  private let epochStart: ContinuousClock.Instant
  private var sessions: BrokerSessions
  private var heartbeats: [Operation] = []
  private var heartbeatsHead = 0
  private var bulk: [Operation] = []
  private var bulkHead = 0
  private var wakeup: CheckedContinuation<Void, Never>?
  private var isStopped = false
  private var loop: Task<Void, Never>?
  /// The answers of the round whose proposal is in flight; `stop` answers them at once.
  private var inFlightFinishes: [@Sendable (Result<Void, ControllerFailure>) -> Void] = []

  /// Starts a controller; call `stop` when this node stops leading.
  ///
  /// Every broker starts with a fresh session (`BrokerSessions.resetAll` semantics): a new
  /// controller has no trustworthy heartbeat times, so none is fenced on a predecessor's
  /// view and every silent one is fenced one session timeout from now.
  public init(
    settings: Settings, controller: MetadataController = MetadataController(),
    log: any ControllerLog, stateMachine: MetadataStateMachine, logger: Logger
  ) {
    self.settings = settings
    self.controller = controller
    self.log = log
    self.stateMachine = stateMachine
    self.logger = logger
    epochStart = clock.now
    sessions = BrokerSessions(nowMs: 0)
    sessions.resetAll(nowMs: 0)
  }

  /// Milliseconds since this controller started (the session clock; monotonic).
  private func nowMs() -> Int64 {
    let (seconds, attoseconds) = (clock.now - epochStart).components
    return seconds * 1_000 + attoseconds / 1_000_000_000_000_000
  }

  public func start() {
    guard loop == nil, !isStopped else { return }
    loop = Task { await self.runLoop() }
  }

  /// Answers every queued operation and the round in flight NOT_LEADER and ends the loop.
  public func stop(leaderID: UInt64?, leaderAPIAddress: String?) {
    guard !isStopped else { return }
    isStopped = true
    let failure = ControllerFailure(
      .notLeader, "this metaserver stopped leading", leaderID: leaderID,
      leaderAPIAddress: leaderAPIAddress)
    for operation in takeAll() {
      operation.finish(.failure(failure))
    }
    // A proposal of the old term may still commit (a later leader that holds the entry,
    // this node included, commits it) or be overwritten; the Raft host may only tell after
    // its proposal timeout. The callers learn now, as NOT_LEADER, and their retry at the new
    // leader sees what became of it (e.g. TOPIC_ALREADY_EXISTS for their own topic).
    let inFlight = inFlightFinishes
    inFlightFinishes = []
    let uncertain = ControllerFailure(
      .notLeader,
      "this metaserver stopped leading while the write was being committed; it may still "
        + "take effect", leaderID: leaderID, leaderAPIAddress: leaderAPIAddress)
    for finish in inFlight {
      finish(.failure(uncertain))
    }
    wake()
  }

  public var queuedHeartbeats: Int { heartbeats.count - heartbeatsHead }

  // MARK: - Submitting operations

  /// Queues an operation and waits for its answer. `isHeartbeat` puts it in the priority
  /// lane. `body` runs on the controller with the scratch image, the sessions and the
  /// session clock, and returns the records to propose plus the answer.
  public func perform<Response: Sendable>(
    _ name: String, isHeartbeat: Bool = false,
    _ body:
      @escaping @Sendable (MetadataImage, inout BrokerSessions, Int64) -> ControllerResult<
        Response
      >
  ) async throws(ControllerFailure) -> Response {
    if isStopped {
      throw ControllerFailure(.notLeader, "this metaserver is not the controller")
    }
    guard
      (heartbeats.count - heartbeatsHead) + (bulk.count - bulkHead) < settings.queuedOperationsMax
    else {
      throw ControllerFailure(
        .requestTimedOut,
        "the controller has \(settings.queuedOperationsMax) operations queued; retry later")
    }
    let answer = NIOLockedValueBox<Response?>(nil)
    let result = await withCheckedContinuation {
      (continuation: CheckedContinuation<Result<Response, ControllerFailure>, Never>) in
      let operation = Operation(
        name: name,
        compute: { image, sessions, nowMs in
          let computed = body(image, &sessions, nowMs)
          answer.withLockedValue { $0 = computed.response }
          return computed.records
        },
        finish: { outcome in
          switch outcome {
          case .success:
            if let response = answer.withLockedValue({ $0 }) {
              continuation.resume(returning: .success(response))
            } else {
              continuation.resume(
                returning: .failure(
                  ControllerFailure(.unknownServerError, "\(name) finished without an answer")))
            }
          case .failure(let failure):
            continuation.resume(returning: .failure(failure))
          }
        })
      if isHeartbeat {
        heartbeats.append(operation)
      } else {
        bulk.append(operation)
      }
      wake()
    }
    return try result.get()
  }

  // MARK: - The loop

  private func wake() {
    if let wakeup {
      self.wakeup = nil
      wakeup.resume()
    }
  }

  private func takeAll() -> [Operation] {
    let all = Array(heartbeats[heartbeatsHead...]) + Array(bulk[bulkHead...])
    heartbeats = []
    heartbeatsHead = 0
    bulk = []
    bulkHead = 0
    return all
  }

  private var hasWork: Bool {
    heartbeatsHead < heartbeats.count || bulkHead < bulk.count
  }

  private func runLoop() async {
    var lastFenceCheckMs: Int64 = 0
    while !isStopped {
      if !hasWork {
        // Sleep until work arrives or the next fence check is due.
        let sleepMs = max(1, settings.fenceCheckIntervalMs - (nowMs() - lastFenceCheckMs))
        let timer = Task {
          // Only a timer that ran out wakes the loop: a cancelled one (work arrived first)
          // must not, or it would cut the next sleep short and the loop would spin.
          guard (try? await Task.sleep(for: .milliseconds(sleepMs))) != nil else { return }
          self.wake()
        }
        await withCheckedContinuation { continuation in
          if hasWork || isStopped {
            continuation.resume()
          } else {
            wakeup = continuation
          }
        }
        timer.cancel()
        if isStopped { break }
      }
      lastFenceCheckMs = nowMs()
      await runRound()
    }
  }

  private func takeRound() -> [Operation] {
    var round = Array(heartbeats[heartbeatsHead...])
    heartbeats = []
    heartbeatsHead = 0
    let bulkTaken = min(settings.bulkOperationsPerRoundMax, bulk.count - bulkHead)
    round += bulk[bulkHead..<bulkHead + bulkTaken]
    bulkHead += bulkTaken
    if bulkHead == bulk.count {
      bulk = []
      bulkHead = 0
    } else if bulkHead > 1_024 {
      bulk.removeFirst(bulkHead)
      bulkHead = 0
    }
    return round
  }

  /// One round: fence check, then queued operations against a scratch image, then one
  /// proposal for all their records.
  private func runRound() async {
    let now = nowMs()
    var scratch = stateMachine.image
    var records: [MetadataRecord] = []
    var waitingForCommit: [@Sendable (Result<Void, ControllerFailure>) -> Void] = []

    let fenceRecords = controller.fenceExpired(
      image: scratch, sessions: sessions, nowMs: now,
      sessionTimeoutMs: settings.sessionTimeoutMs)
    if !fenceRecords.isEmpty {
      do {
        scratch = try scratch.applying(fenceRecords, offset: scratch.offset + 1)
        records += fenceRecords
        logger.notice(
          "fencing brokers whose session expired",
          metadata: ["records": "\(fenceRecords.count)"])
      } catch {
        logger.error("fence records do not apply to the image: \(error)")
      }
    }

    var operations = takeRound()
    var index = 0
    while index < operations.count {
      let operation = operations[index]
      index += 1
      let operationRecords = operation.compute(scratch, &sessions, now)
      let finish = operation.finish
      if operationRecords.isEmpty {
        if records.isEmpty {
          // Nothing of this round is pending: the answer reflects committed state.
          finish(.success(()))
        } else {
          // Its answer may depend on records of this round that are not committed yet.
          waitingForCommit.append(finish)
        }
        continue
      }
      do {
        scratch = try scratch.applying(operationRecords, offset: scratch.offset + 1)
      } catch {
        logger.error(
          "controller records do not apply; refusing the operation",
          metadata: ["operation": "\(operation.name)", "error": "\(error)"])
        finish(
          .failure(
            ControllerFailure(
              .unknownServerError,
              "\(operation.name): the controller's records do not apply: \(error)")))
        continue
      }
      records += operationRecords
      waitingForCommit.append(finish)
      // Operations past the record budget go back to the front of the bulk lane.
      if records.count >= settings.recordsPerRoundMax && index < operations.count {
        let rest = operations[index...]
        requeueBulkAtFront(Array(rest))
        operations.removeSubrange(index...)
      }
    }

    guard !records.isEmpty else {
      for finish in waitingForCommit { finish(.success(())) }
      return
    }
    let outcome: Result<Void, ControllerFailure>
    inFlightFinishes = waitingForCommit
    do {
      let index = try await log.propose(
        MetadataRecord.encodeBatch(records), expectedTerm: settings.term)
      if let rejection = stateMachine.rejection(at: Int64(clamping: index)) {
        outcome = .failure(
          ControllerFailure(
            .unknownServerError, "the committed batch at \(index) was skipped: \(rejection)"))
      } else {
        outcome = .success(())
      }
    } catch let error as RaftHostError {
      outcome = .failure(Self.failure(for: error))
    } catch let failure as ControllerFailure {
      outcome = .failure(failure)
    } catch {
      outcome = .failure(ControllerFailure(.unknownServerError, "proposal failed: \(error)"))
    }
    if case .failure(let failure) = outcome {
      logger.warning(
        "controller batch not committed",
        metadata: ["records": "\(records.count)", "error": "\(failure)"])
    }
    // Empty when `stop` already answered this round.
    let finishes = inFlightFinishes
    inFlightFinishes = []
    for finish in finishes { finish(outcome) }
  }

  private func requeueBulkAtFront(_ operations: [Operation]) {
    bulk = operations + Array(bulk[bulkHead...])
    bulkHead = 0
  }

  /// How a failed proposal is reported to the API caller.
  static func failure(for error: RaftHostError) -> ControllerFailure {
    let leaderAPI = error.leaderAddresses?.apiAddress?.description
    switch error.code {
    case .notLeader:
      return ControllerFailure(
        .notLeader, error.message, leaderID: error.leaderID, leaderAPIAddress: leaderAPI)
    case .proposalDropped, .proposalOverwritten, .shutDown, .stopped, .cancelled:
      return ControllerFailure(
        .notLeader, "the write was not committed: \(error.message)", leaderID: error.leaderID,
        leaderAPIAddress: leaderAPI)
    case .timedOut, .outcomeUnknown:
      return ControllerFailure(
        .requestTimedOut,
        "the write was not confirmed as committed in time (it may still commit); is a "
          + "majority of the metaservers reachable? \(error.message)")
    case .reconfigurationInProgress:
      return ControllerFailure(.reconfigurationInProgress, error.message)
    default:
      return ControllerFailure(.unknownServerError, error.message)
    }
  }
}
