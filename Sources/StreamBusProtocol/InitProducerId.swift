/// InitProducerId (api key 22): hands an idempotent producer a fresh producer id.
///
/// Transactions do not exist in StreamBus, so ``transactionalId`` must be null; a broker
/// answers a non-null one with `INVALID_REQUEST`.
public struct InitProducerIdRequest: WireBody {
  public static let apiKey = ApiKey.initProducerId

  public var transactionalId: String?
  /// Kafka's transaction timeout; carried for wire compatibility, unused without transactions.
  public var transactionTimeoutMs: Int32

  public init(transactionalId: String? = nil, transactionTimeoutMs: Int32 = -1) {
    self.transactionalId = transactionalId
    self.transactionTimeoutMs = transactionTimeoutMs
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    transactionalId = try reader.readNullableString("initProducerId.transactionalId")
    transactionTimeoutMs = try reader.readInt32("initProducerId.transactionTimeoutMs")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeNullableString(transactionalId)
    writer.writeInt32(transactionTimeoutMs)
  }

  public var encodedBytesEstimate: Int { 2 + (transactionalId?.utf8.count ?? 0) + 4 }
}

public struct InitProducerIdResponse: WireBody {
  public static let apiKey = ApiKey.initProducerId

  public var errorCode: ErrorCode
  /// -1 when ``errorCode`` is not `NONE`.
  public var producerId: Int64
  /// 0 for a fresh producer id; -1 when ``errorCode`` is not `NONE`.
  public var producerEpoch: Int16

  public init(errorCode: ErrorCode, producerId: Int64, producerEpoch: Int16) {
    self.errorCode = errorCode
    self.producerId = producerId
    self.producerEpoch = producerEpoch
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    errorCode = ErrorCode(rawValue: try reader.readInt16("initProducerIdResponse.errorCode"))
    producerId = try reader.readInt64("initProducerIdResponse.producerId")
    producerEpoch = try reader.readInt16("initProducerIdResponse.producerEpoch")
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeInt16(errorCode.rawValue)
    writer.writeInt64(producerId)
    writer.writeInt16(producerEpoch)
  }

  public var encodedBytesEstimate: Int { 2 + 8 + 2 }
}
