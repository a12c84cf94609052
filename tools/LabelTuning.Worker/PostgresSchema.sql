-- The tables and named queries that Orleans' ADO.NET clustering and grain-persistence providers (10.x) use, for
-- PostgreSQL 12 or later. Written for this repository against the providers' contract: Orleans reads its queries from
-- OrleansQuery by key, binds parameters by name (@DeploymentId, @GrainIdHash, ...) and reads result columns by name;
-- a query that reports success returns one row whose first column is a count (> 0 true, 0 false), and one that fails
-- midway rolls its changes back. 'LabelTuning.Worker init-database' runs this once per database, in one transaction.

CREATE TABLE OrleansQuery
(
    QueryKey varchar(64) PRIMARY KEY,
    QueryText text NOT NULL
);

-- Membership: one version row per cluster, bumped by every change (the providers' optimistic concurrency), and one
-- row per silo incarnation.
CREATE TABLE lt_membership_version
(
    deployment_id varchar(150) PRIMARY KEY,
    changed_at timestamptz NOT NULL DEFAULT now(),
    version integer NOT NULL DEFAULT 0
);

CREATE TABLE lt_membership
(
    deployment_id varchar(150) NOT NULL REFERENCES lt_membership_version (deployment_id),
    address varchar(45) NOT NULL,
    port integer NOT NULL,
    generation integer NOT NULL,
    silo_name varchar(150) NOT NULL,
    host_name varchar(150) NOT NULL,
    status integer NOT NULL,
    proxy_port integer,
    suspect_times text,
    start_time timestamptz NOT NULL,
    i_am_alive_time timestamptz NOT NULL,
    PRIMARY KEY (deployment_id, address, port, generation)
);

-- Adds a silo row and bumps the version, only if the version is still the one the caller read; otherwise nothing changes.
CREATE FUNCTION lt_join(p_deployment varchar, p_address varchar, p_port integer, p_generation integer, p_silo_name varchar,
    p_host_name varchar, p_status integer, p_proxy_port integer, p_start timestamptz, p_alive timestamptz, p_version integer)
    RETURNS integer LANGUAGE plpgsql AS
$body$
BEGIN
    UPDATE lt_membership_version SET version = version + 1, changed_at = now()
        WHERE deployment_id = p_deployment AND version = p_version;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    BEGIN
        INSERT INTO lt_membership (deployment_id, address, port, generation, silo_name, host_name, status, proxy_port, start_time, i_am_alive_time)
            VALUES (p_deployment, p_address, p_port, p_generation, p_silo_name, p_host_name, p_status, p_proxy_port, p_start, p_alive);
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION 'silo %:% generation % is already in cluster %', p_address, p_port, p_generation, p_deployment;
    END;
    RETURN 1;
END
$body$;

-- Changes a silo row and bumps the version, only if the version is still the one the caller read and the row exists.
CREATE FUNCTION lt_change(p_deployment varchar, p_address varchar, p_port integer, p_generation integer, p_status integer,
    p_suspect_times text, p_alive timestamptz, p_version integer)
    RETURNS integer LANGUAGE plpgsql AS
$body$
BEGIN
    UPDATE lt_membership_version SET version = version + 1, changed_at = now()
        WHERE deployment_id = p_deployment AND version = p_version;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    UPDATE lt_membership SET status = p_status, suspect_times = p_suspect_times, i_am_alive_time = p_alive
        WHERE deployment_id = p_deployment AND address = p_address AND port = p_port AND generation = p_generation;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'silo %:% generation % is not in cluster %', p_address, p_port, p_generation, p_deployment;
    END IF;
    RETURN 1;
END
$body$;

INSERT INTO OrleansQuery (QueryKey, QueryText) VALUES
('InsertMembershipVersionKey', $q$
    WITH added AS (
        INSERT INTO lt_membership_version (deployment_id) VALUES (@DeploymentId)
        ON CONFLICT (deployment_id) DO NOTHING
        RETURNING 1)
    SELECT count(*)::integer AS row_count FROM added
$q$),
('InsertMembershipKey', $q$
    SELECT lt_join(@DeploymentId, @Address, @Port, @Generation, @SiloName, @HostName, @Status, @ProxyPort, @StartTime, @IAmAliveTime, @Version) AS row_count
$q$),
('UpdateMembershipKey', $q$
    SELECT lt_change(@DeploymentId, @Address, @Port, @Generation, @Status, @SuspectTimes, @IAmAliveTime, @Version) AS row_count
$q$),
('UpdateIAmAlivetimeKey', $q$
    UPDATE lt_membership SET i_am_alive_time = @IAmAliveTime
    WHERE deployment_id = @DeploymentId AND address = @Address AND port = @Port AND generation = @Generation
$q$),
('MembershipReadRowKey', $q$
    SELECT v.deployment_id AS DeploymentId, m.address AS Address, m.port AS Port, m.generation AS Generation,
           m.silo_name AS SiloName, m.host_name AS HostName, m.status AS Status, m.proxy_port AS ProxyPort,
           m.suspect_times AS SuspectTimes, m.start_time AS StartTime, m.i_am_alive_time AS IAmAliveTime, v.version AS Version
    FROM lt_membership_version v
    LEFT JOIN lt_membership m
        ON m.deployment_id = v.deployment_id AND m.address = @Address AND m.port = @Port AND m.generation = @Generation
    WHERE v.deployment_id = @DeploymentId
$q$),
('MembershipReadAllKey', $q$
    SELECT v.deployment_id AS DeploymentId, m.address AS Address, m.port AS Port, m.generation AS Generation,
           m.silo_name AS SiloName, m.host_name AS HostName, m.status AS Status, m.proxy_port AS ProxyPort,
           m.suspect_times AS SuspectTimes, m.start_time AS StartTime, m.i_am_alive_time AS IAmAliveTime, v.version AS Version
    FROM lt_membership_version v
    LEFT JOIN lt_membership m ON m.deployment_id = v.deployment_id
    WHERE v.deployment_id = @DeploymentId
$q$),
('DeleteMembershipTableEntriesKey', $q$
    DELETE FROM lt_membership WHERE deployment_id = @DeploymentId;
    DELETE FROM lt_membership_version WHERE deployment_id = @DeploymentId
$q$),
('GatewaysQueryKey', $q$
    SELECT address AS Address, proxy_port AS ProxyPort, generation AS Generation
    FROM lt_membership
    WHERE deployment_id = @DeploymentId AND status = @Status AND proxy_port > 0
$q$),
('CleanupDefunctSiloEntriesKey', $q$
    DELETE FROM lt_membership
    WHERE deployment_id = @DeploymentId AND i_am_alive_time < @IAmAliveTime AND status <> 3
$q$);

-- Grain state: one row per grain and service, with a version for optimistic concurrency (the ETag).
CREATE TABLE lt_grain_state
(
    grain_id_hash integer NOT NULL,
    grain_id_n0 bigint NOT NULL,
    grain_id_n1 bigint NOT NULL,
    grain_type_hash integer NOT NULL,
    grain_type varchar(512) NOT NULL,
    grain_id_extension varchar(512),
    service_id varchar(150) NOT NULL,
    payload_binary bytea,
    payload_json text,
    payload_xml text,
    modified_on timestamptz NOT NULL DEFAULT now(),
    version integer NOT NULL
);

CREATE UNIQUE INDEX lt_grain_state_identity ON lt_grain_state
    (grain_id_hash, grain_type_hash, grain_id_n0, grain_id_n1, grain_type, coalesce(grain_id_extension, ''), service_id);

-- Writes a grain's state: updates the row at the version the grain read (a first write inserts version 1) and returns
-- the new version; returns the old version (or null) when another writer got there first, which Orleans reports as a
-- conflict. The providers bind only the payload of the configured grain-state serializer; the worker keeps Orleans'
-- default, binary (@PayloadBinary), so the JSON and XML columns stay empty.
CREATE FUNCTION lt_write_state(p_hash integer, p_n0 bigint, p_n1 bigint, p_type_hash integer, p_type varchar, p_extension varchar,
    p_service varchar, p_version integer, p_binary bytea)
    RETURNS integer LANGUAGE plpgsql AS
$body$
BEGIN
    IF p_version IS NULL THEN
        INSERT INTO lt_grain_state (grain_id_hash, grain_id_n0, grain_id_n1, grain_type_hash, grain_type, grain_id_extension, service_id,
                payload_binary, version)
            VALUES (p_hash, p_n0, p_n1, p_type_hash, p_type, p_extension, p_service, p_binary, 1)
            ON CONFLICT DO NOTHING;
        RETURN CASE WHEN FOUND THEN 1 ELSE NULL END;
    END IF;
    UPDATE lt_grain_state
        SET payload_binary = p_binary, modified_on = now(), version = version + 1
        WHERE grain_id_hash = p_hash AND grain_type_hash = p_type_hash AND grain_id_n0 = p_n0 AND grain_id_n1 = p_n1
            AND grain_type = p_type AND grain_id_extension IS NOT DISTINCT FROM p_extension AND service_id = p_service
            AND version = p_version;
    RETURN CASE WHEN FOUND THEN p_version + 1 ELSE p_version END;
END
$body$;

INSERT INTO OrleansQuery (QueryKey, QueryText) VALUES
('WriteToStorageKey', $q$
    SELECT lt_write_state(@GrainIdHash, @GrainIdN0, @GrainIdN1, @GrainTypeHash, @GrainTypeString, @GrainIdExtensionString,
        @ServiceId, @GrainStateVersion, @PayloadBinary) AS NewGrainStateVersion
$q$),
('ReadFromStorageKey', $q$
    SELECT payload_binary AS PayloadBinary, payload_xml AS PayloadXml, payload_json AS PayloadJson, modified_on AS ModifiedOn, version AS Version
    FROM lt_grain_state
    WHERE grain_id_hash = @GrainIdHash AND grain_type_hash = @GrainTypeHash AND grain_id_n0 = @GrainIdN0 AND grain_id_n1 = @GrainIdN1
        AND grain_type = @GrainTypeString AND grain_id_extension IS NOT DISTINCT FROM @GrainIdExtensionString AND service_id = @ServiceId
$q$),
('ClearStorageKey', $q$
    UPDATE lt_grain_state
    SET payload_binary = NULL, payload_json = NULL, payload_xml = NULL, modified_on = now(), version = version + 1
    WHERE grain_id_hash = @GrainIdHash AND grain_type_hash = @GrainTypeHash AND grain_id_n0 = @GrainIdN0 AND grain_id_n1 = @GrainIdN1
        AND grain_type = @GrainTypeString AND grain_id_extension IS NOT DISTINCT FROM @GrainIdExtensionString AND service_id = @ServiceId
        AND version = @GrainStateVersion
    RETURNING version AS NewGrainStateVersion
$q$),
('DeleteStorageKey', $q$
    WITH removed AS (
        DELETE FROM lt_grain_state
        WHERE grain_id_hash = @GrainIdHash AND grain_type_hash = @GrainTypeHash AND grain_id_n0 = @GrainIdN0 AND grain_id_n1 = @GrainIdN1
            AND grain_type = @GrainTypeString AND grain_id_extension IS NOT DISTINCT FROM @GrainIdExtensionString AND service_id = @ServiceId
            AND version = @GrainStateVersion
        RETURNING version)
    SELECT count(*)::integer AS row_count FROM removed
$q$);
