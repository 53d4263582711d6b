-- What was recommended: one row per (recommendation, shown candidate), newest first.
select *
from {{ ref('stg_recommendation_candidates') }}
order by created_at desc, recommendation_id, rank
