-- The open-complaints gauge counts complaints by status and stage among those not closed or
-- withdrawn; this partial index holds just those, so sampling it does not read every complaint
-- ever logged. (Its WHERE must stay the gauge query's, for the planner to use it.)
CREATE INDEX complaint_list_open_by_status
    ON complaint_list (status, stage)
    WHERE status NOT IN ('CLOSED', 'WITHDRAWN');
