#!/usr/bin/env node
// One complaint through Doorstep from Node, with @grpc/grpc-js and @grpc/proto-loader reading
// proto/ at run time (nothing generated). Install with `npm ci` in this directory, then run, with
// a token whose roles allow every step (admin, intake, officer, manager):
//
//     DOORSTEP_ADDRESS=127.0.0.1:50051 DOORSTEP_TOKEN=<JWT> node tests/clients/node/journey.js
//
// It registers a contractor, records a visit, logs a complaint about it, acknowledges it, reads
// it back and asks for the contractor's performance, checking each answer as a user would. It
// prints what it saw as one JSON object; any gRPC error or unexpected answer ends it with a
// non-zero exit. tests/e2e/foreign_clients.rs runs it against a real server.
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const CONTRACTOR_ID = 'journey-retrofit';
const VISIT_ID = 'journey-visit-1';
// Every call gets this long; a server that does not answer is a failure, not a hang.
const CALL_TIMEOUT_MS = 10_000;

class JourneyFailed extends Error {}

function expect(condition, what) {
  if (!condition) {
    throw new JourneyFailed(what);
  }
}

function timestamp(text) {
  return { seconds: Math.floor(Date.parse(text) / 1000), nanos: 0 };
}

// proto-loader hands 64-bit integers over as strings (`longs: String`) so none is rounded.
function readTimestamp(value) {
  return new Date(Number(value.seconds) * 1000).toISOString().replace('.000Z', 'Z');
}

function loadApi(protoDirectory) {
  const definition = protoLoader.loadSync(
    ['doorstep/v1/complaints.proto', 'doorstep/v1/contractors.proto', 'doorstep/v1/performance.proto'],
    { includeDirs: [protoDirectory], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
  );
  return grpc.loadPackageDefinition(definition).doorstep.v1;
}

async function journey(api, address, token) {
  const credentials = grpc.credentials.createInsecure();
  const contractors = new api.ContractorService(address, credentials);
  const options = { channelOverride: contractors.getChannel() };
  const visits = new api.VisitService(address, credentials, options);
  const complaints = new api.ComplaintService(address, credentials, options);
  const performance = new api.PerformanceService(address, credentials, options);
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);

  const call = (client, method, request) =>
    new Promise((resolve, reject) => {
      const deadline = Date.now() + CALL_TIMEOUT_MS;
      client[method](request, metadata, { deadline }, (error, response) =>
        error ? reject(error) : resolve(response),
      );
    });

  try {
    await call(contractors, 'RegisterContractor', {
      contractor_id: CONTRACTOR_ID,
      request_id: `register-${CONTRACTOR_ID}`,
      profile: {
        legal_name: 'Journey Retrofit Ltd',
        trading_names: ['Journey Warm Homes'],
        public_contact_name: 'Sam Site',
        public_phone: '0113 496 0001',
        contracts: [{ reference: 'RETRO-2026-01', standards: ['SERVICE_STANDARD_GATES_SECURED'] }],
      },
    });
    const recorded = await call(visits, 'RecordVisits', {
      visits: [
        {
          visit_id: VISIT_ID,
          contractor_id: CONTRACTOR_ID,
          uprn: '100023336956',
          work_order_reference: 'WO-1',
          visit_date: '2026-05-04',
        },
      ],
    });
    expect(recorded.recorded === 1, `the visit was not recorded: ${JSON.stringify(recorded)}`);

    const logged = await call(complaints, 'LogComplaint', {
      idempotency_key: 'node-journey-1',
      channel: 'CHANNEL_PHONE',
      source_system: 'call-centre',
      resident: { reference: 'T-1001', name: 'Ada Resident', phone: '07700 900123' },
      property: { uprn: '100023336956', address: '1 Example Road, Leeds' },
      contractor_id: CONTRACTOR_ID,
      visit_id: VISIT_ID,
      standards: ['SERVICE_STANDARD_GATES_SECURED'],
      description: 'The side gate was left open and the dog got out',
      occurred_at: timestamp('2026-05-04T15:00:00Z'),
      received_at: timestamp('2026-05-05T10:00:00Z'),
    });
    expect(logged.complaint_id !== '', 'LogComplaint gave no complaint id');
    expect(!logged.duplicate, 'a first LogComplaint was taken for a retry');

    const acknowledged = await call(complaints, 'AcknowledgeComplaint', {
      complaint_id: logged.complaint_id,
      request_id: 'node-journey-acknowledge',
      stage: 'STAGE_ONE',
      handler: 'Officer One',
      complaint_definition: 'Gate left open during loft insulation',
      effective_at: timestamp('2026-05-07T09:00:00Z'),
    });
    expect(acknowledged.response_due !== '', 'the acknowledgement gave no response deadline');

    const fetched = await call(complaints, 'GetComplaint', { complaint_id: logged.complaint_id });
    const complaint = fetched.complaint;
    expect(
      complaint.status === 'COMPLAINT_STATUS_UNDER_INVESTIGATION',
      `an acknowledged complaint reads ${complaint.status}`,
    );
    expect(
      complaint.stage_one.response_due === acknowledged.response_due,
      "GetComplaint's response deadline differs from the acknowledgement's",
    );
    expect(complaint.resident.name === 'Ada Resident', "the resident's name did not come back");

    const figures = await call(performance, 'GetContractorPerformance', {
      contractor_id: CONTRACTOR_ID,
      from_month: '2026-05',
      to_month: '2026-05',
      // Read our own writes: wait for the read models to reach the acknowledgement.
      min_position: acknowledged.position,
    });
    expect(figures.complaints === '1', `the report counts ${figures.complaints} complaints, not 1`);
    expect(figures.visits === '1', `the report counts ${figures.visits} visits, not 1`);
    // A proto3 `optional` field is a one-field oneof; its name says whether it was sent.
    const medianSent =
      figures._median_working_days_to_acknowledge === 'median_working_days_to_acknowledge';

    return {
      complaint_id: logged.complaint_id,
      logged: { version: Number(logged.version), duplicate: logged.duplicate },
      acknowledged: { version: Number(acknowledged.version), response_due: acknowledged.response_due },
      complaint: {
        complaint_id: complaint.complaint_id,
        status: complaint.status,
        stage: complaint.stage,
        contractor_id: complaint.contractor_id,
        visit_id: complaint.visit_id,
        resident_name: complaint.resident.name,
        uprn: complaint.property.uprn,
        standards: complaint.standards,
        received_at: readTimestamp(complaint.received_at),
        acknowledged_at: readTimestamp(complaint.stage_one.acknowledged_at),
        handler: complaint.stage_one.handler,
        response_due: complaint.stage_one.response_due,
        version: Number(complaint.version),
        history: fetched.history.map((entry) => entry.event_type),
      },
      performance: {
        contractor_id: figures.contractor_id,
        legal_name: figures.legal_name,
        visits: Number(figures.visits),
        complaints: Number(figures.complaints),
        reported_breaches: Number(figures.reported_breaches),
        upheld_breaches: Number(figures.upheld_breaches),
        reported_per_100_visits: figures.reported_per_100_visits.value,
        median_working_days_to_acknowledge: medianSent ? figures.median_working_days_to_acknowledge : null,
      },
    };
  } finally {
    for (const client of [visits, complaints, performance, contractors]) {
      client.close();
    }
  }
}

async function main() {
  const address = process.env.DOORSTEP_ADDRESS || '127.0.0.1:50051';
  const token = process.env.DOORSTEP_TOKEN;
  if (!token) {
    throw new JourneyFailed('set DOORSTEP_TOKEN to a JWT');
  }
  const protoDirectory = process.env.DOORSTEP_PROTO_DIR || path.join(__dirname, '..', '..', '..', 'proto');
  const seen = await journey(loadApi(protoDirectory), address, token);
  console.log(JSON.stringify(seen, null, 2));
}

main().catch((error) => {
  if (error instanceof JourneyFailed) {
    console.error(`journey.js: ${error.message}`);
  } else if (typeof error.code === 'number') {
    console.error(`journey.js: gRPC error ${grpc.status[error.code]}: ${error.details}`);
  } else {
    console.error('journey.js:', error);
  }
  process.exitCode = 1;
});
