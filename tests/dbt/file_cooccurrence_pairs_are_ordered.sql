-- Every pair is stored once, alphabetically ordered, never a file with itself.
-- Shown in Dagster as an asset check of file_cooccurrence (the test reads several models).
{{ config(meta={'dagster': {'ref': {'name': 'file_cooccurrence'}}}) }}
select file_a, file_b, 'int_file_pairs__aggregated' as model
from {{ ref('int_file_pairs__aggregated') }}
where not file_a < file_b
union all
select file_a, file_b, 'file_cooccurrence'
from {{ ref('file_cooccurrence') }}
where not file_a < file_b
