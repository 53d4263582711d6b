-- The findings behind pattern_alerts (issue 16), one row per finding, without their words:
-- pattern_alerts is a view that adds the evidence and message sentences, the theme label
-- and what moves with every append (macros/pattern_alerts_rows.sql): a stale finding's
-- weeks unused and score (counted to the newest event), its replacement's numbers (the
-- global prior moves them) and its theme's recent events. Stored, those made a +1% refresh
-- rewrite 590k of 1.39M rows here and in the serving copy, and writing the sentences of
-- every row was a third of the model's work (issue 18). The rules are pattern_alerts'
-- (see its .yml); the candidates and the themes' recent use are macros
-- (macros/alert_inputs.sql) that int_theme_replacements and int_theme_recent_use share.
-- Patterns merged away (dim_patterns.superseded_by) raise no alerts. "Now" is the newest
-- event in the data, never the wall clock, so a rebuild of the same data gives the same
-- findings.
with

patterns as (
    select
        pattern_id,
        usage_count,
        success_rate,
        first_seen_at,
        last_used_at,
        theme_id,
        paraphrase_group_id
    from {{ ref('dim_patterns') }}
    where superseded_by is null
),

trends as (
    select pattern_id, n_events, avg_quality, quality_slope_per_week, slope_t_stat, direction
    from {{ ref('pattern_trend_summary') }}
),

weekly as (
    select pattern_id, week, n_events, sum_quality, last_occurred_at
    from {{ ref('int_pattern_weeks__aggregated') }}
),

declining_trends as (
    -- the patterns a 'declining' finding is about: significant is not enough, a tiny slope
    -- (-0.0004/week) is no reason to act
    select pattern_id
    from trends
    where direction = 'declining'
        and abs(quality_slope_per_week) >= {{ var('alert_min_abs_slope_per_week') }}
),

recent_quality as (
    -- a pattern's quality now: pattern_trends' moving average at its last week of use, the
    -- events of the var('trend_window_weeks') calendar weeks ending there, computed from
    -- the weekly sums rather than the gap-filled view; only the declining patterns read
    -- it, so only theirs are summed (all 1M patterns' weeks: 1 s of a 10M-event build)
    select
        weekly.pattern_id,
        -- an exact sum: parallel sums of doubles differed in the last bit between two
        -- builds of the same data (macros/exact_decimal.sql)
        cast(sum({{ exact_decimal('weekly.sum_quality') }}) / sum(weekly.n_events) as double)
            as current_quality
    from weekly
    inner join (
        select pattern_id, max(week) as last_week
        from weekly
        where pattern_id in (select pattern_id from declining_trends)
        group by pattern_id
    ) as spans on spans.pattern_id = weekly.pattern_id
    where weekly.week > spans.last_week - {{ weeks_interval(var('trend_window_weeks')) }}
    group by weekly.pattern_id
),

{{ alert_theme_recent_ctes(weekly='weekly', patterns='patterns') }},

{{ alert_candidate_ctes(patterns='patterns', trends='trends') }},

declining as (
    select
        'declining' as kind,
        1 as priority,
        patterns.pattern_id,
        best.pattern_id as related_pattern_id,
        patterns.theme_id,
        abs(trends.slope_t_stat) as score,
        trends.n_events,
        trends.avg_quality,
        trends.quality_slope_per_week,
        trends.slope_t_stat,
        recent_quality.current_quality,
        null::double as similarity,
        null::bigint as related_n_events,
        null::bigint as times_recommended,
        null::bigint as times_used,
        null::{{ timestamp_type() }} as first_recommended_at,
        null::{{ timestamp_type() }} as last_used_at,
        null::{{ timestamp_type() }} as last_active_at
    from trends
    inner join declining_trends on declining_trends.pattern_id = trends.pattern_id
    inner join patterns on patterns.pattern_id = trends.pattern_id
    left join recent_quality on recent_quality.pattern_id = trends.pattern_id
    -- a replacement must be expected to do better than the pattern does now
    left join ranked_candidates as best
        on best.theme_id = patterns.theme_id
        and best.pattern_id <> patterns.pattern_id
        and best.candidate_rank <= 2
        and best.expected_quality > coalesce(recent_quality.current_quality, trends.avg_quality)
    -- the best candidate other than the pattern itself
    qualify row_number() over (
        partition by patterns.pattern_id order by best.candidate_rank nulls last
    ) = 1
),

-- unproven: "recommended" means shown at rank 1 (what an agent is told to try), counted
-- per recommendation; "used" means any usage event of the pattern (linked to a
-- recommendation or not) since it was first recommended at rank 1. An empty log gives
-- no rows here, so the kind simply does not fire.
recommended_first as (
    select
        pattern_id,
        count(distinct recommendation_id) as times_recommended,
        min(created_at) as first_recommended_at
    from {{ ref('recommendation_log') }}
    where rank = 1
    group by pattern_id
),

used_since as (
    select
        recommended_first.pattern_id,
        recommended_first.times_recommended,
        recommended_first.first_recommended_at,
        count(usage.event_id) as times_used
    from recommended_first
    left join {{ ref('stg_usage_events') }} as usage
        on usage.pattern_id = recommended_first.pattern_id
        and usage.occurred_at >= recommended_first.first_recommended_at
    group by all
),

close_entries as (
    -- the per-description similar lists' entries at least this similar whose pattern is
    -- not merged away, each with that pattern's evidence and paraphrase group: joined
    -- once per list entry (~240k at 1M patterns), not per pattern's pair (10M through
    -- the pattern_similar_pairs view: 1.2 s of a 10M-event refresh's 4.6 s here)
    select
        lists.description_hash,
        lists.list_rank,
        lists.similar_pattern_id,
        lists.similarity,
        lists.same_description,
        lists.last_same_description_id,
        keep.usage_count as keep_usage_count,
        keep.paraphrase_group_id as keep_paraphrase_group_id
    from {{ ref('int_pattern_texts__neighbors') }} as lists
    inner join patterns as keep on keep.pattern_id = lists.similar_pattern_id
    where lists.similarity >= {{ var('near_duplicate_similarity') }}
),

pattern_texts as (
    -- each pattern's text (its similar list's key), evidence and paraphrase group
    select
        clustered.pattern_id,
        clustered.description_hash,
        patterns.usage_count,
        patterns.paraphrase_group_id
    from {{ ref('int_patterns__clustered') }} as clustered
    inner join patterns on patterns.pattern_id = clustered.pattern_id
),

close_pairs as (
    -- nearest neighbours (pattern_similar_pairs' rows, k per pattern) at least this
    -- similar, from those entries (macros/pattern_similar_pairs_rows.sql), with both
    -- patterns' evidence and groups
    {{ pattern_similar_pairs_rows(
        'pattern_texts',
        'close_entries',
        carry=[
            'keep_usage_count', 'keep_paraphrase_group_id',
            'clustered.usage_count', 'clustered.paraphrase_group_id',
        ],
    ) | indent(4) }}
),

-- per pattern, the close neighbour in its paraphrase group with the most evidence (more
-- events, then higher cosine, ties to the smaller id): the smallest (-events, -cosine, id),
-- one aggregate instead of a window over every candidate pair (5.4M at 10M events)
near_duplicate_keeps as (
    select
        pattern_id,
        min({{ struct_of([
            ('neg_events', '-keep_usage_count'),
            ('neg_similarity', '-similarity'),
            ('keep_id', 'similar_pattern_id'),
        ]) }}) as keep
    from close_pairs
    where keep_paraphrase_group_id = paraphrase_group_id
        and (
            keep_usage_count > usage_count
            or (keep_usage_count = usage_count and similar_pattern_id < pattern_id)
        )
    group by pattern_id
),

near_duplicate as (
    -- a pattern with a close neighbour in its paraphrase group that has more evidence
    -- (more events; ties to the smaller id): keep the neighbour with the most evidence
    select
        'near_duplicate' as kind,
        2 as priority,
        patterns.pattern_id,
        keeps.keep.keep_id as related_pattern_id,
        patterns.theme_id,
        -keeps.keep.neg_similarity as score,
        patterns.usage_count as n_events,
        patterns.success_rate as avg_quality,
        null::double as quality_slope_per_week,
        null::double as slope_t_stat,
        -keeps.keep.neg_similarity as similarity,
        -keeps.keep.neg_events as related_n_events,
        null::double as current_quality,
        null::bigint as times_recommended,
        null::bigint as times_used,
        null::{{ timestamp_type() }} as first_recommended_at,
        null::{{ timestamp_type() }} as last_used_at,
        null::{{ timestamp_type() }} as last_active_at
    from near_duplicate_keeps as keeps
    inner join patterns on patterns.pattern_id = keeps.pattern_id
),

stale as (
    -- weeks unused, score and the replacement's numbers are pattern_alerts' (read time)
    select
        'stale' as kind,
        3 as priority,
        patterns.pattern_id,
        best.pattern_id as related_pattern_id,
        patterns.theme_id,
        null::double as score,
        patterns.usage_count as n_events,
        patterns.success_rate as avg_quality,
        null::double as quality_slope_per_week,
        null::double as slope_t_stat,
        null::double as similarity,
        null::bigint as related_n_events,
        null::double as current_quality,
        null::bigint as times_recommended,
        null::bigint as times_used,
        null::{{ timestamp_type() }} as first_recommended_at,
        patterns.last_used_at,
        coalesce(patterns.last_used_at, patterns.first_seen_at) as last_active_at
    from patterns
    cross join data_end
    inner join theme_recent on theme_recent.theme_id = patterns.theme_id
    left join ranked_candidates as best
        on best.theme_id = patterns.theme_id
        and best.pattern_id <> patterns.pattern_id
        and best.candidate_rank <= 2
    where coalesce(patterns.last_used_at, patterns.first_seen_at)
        < data_end.last_event_at - {{ weeks_interval(var('stale_weeks')) }}
        and theme_recent.recent_events > 0
    qualify row_number() over (
        partition by patterns.pattern_id order by best.candidate_rank nulls last
    ) = 1
),

rising as (
    select
        'rising' as kind,
        4 as priority,
        patterns.pattern_id,
        null::{{ text_type() }} as related_pattern_id,
        patterns.theme_id,
        abs(trends.slope_t_stat) as score,
        trends.n_events,
        trends.avg_quality,
        trends.quality_slope_per_week,
        trends.slope_t_stat,
        null::double as similarity,
        null::bigint as related_n_events,
        null::double as current_quality,
        null::bigint as times_recommended,
        null::bigint as times_used,
        null::{{ timestamp_type() }} as first_recommended_at,
        null::{{ timestamp_type() }} as last_used_at,
        null::{{ timestamp_type() }} as last_active_at
    from trends
    inner join patterns on patterns.pattern_id = trends.pattern_id
    where trends.direction = 'improving'
        and abs(trends.quality_slope_per_week) >= {{ var('alert_min_abs_slope_per_week') }}
),

unproven as (
    select
        'unproven' as kind,
        5 as priority,
        patterns.pattern_id,
        null::{{ text_type() }} as related_pattern_id,
        patterns.theme_id,
        used_since.times_recommended::double as score,
        patterns.usage_count as n_events,
        patterns.success_rate as avg_quality,
        null::double as quality_slope_per_week,
        null::double as slope_t_stat,
        null::double as similarity,
        null::bigint as related_n_events,
        null::double as current_quality,
        used_since.times_recommended,
        used_since.times_used,
        used_since.first_recommended_at,
        null::{{ timestamp_type() }} as last_used_at,
        null::{{ timestamp_type() }} as last_active_at
    from used_since
    inner join patterns on patterns.pattern_id = used_since.pattern_id
    where used_since.times_recommended >= {{ var('unproven_min_recommendations') }}
        and used_since.times_used < {{ var('unproven_max_uses') }}
),

-- every kind with the same columns, listed once (a positional union: Spark SQL has no
-- `union all by name`); a kind without a column has it as a typed null above
{%- set finding_columns = [
    'kind', 'priority', 'pattern_id', 'related_pattern_id', 'theme_id', 'score', 'n_events',
    'avg_quality', 'quality_slope_per_week', 'slope_t_stat', 'current_quality', 'similarity',
    'related_n_events', 'times_recommended', 'times_used', 'first_recommended_at',
    'last_used_at', 'last_active_at',
] %}
findings as (
    {%- for kind in ['declining', 'near_duplicate', 'stale', 'rising', 'unproven'] %}
    {% if not loop.first %}union all
    {% endif %}select {{ finding_columns | join(', ') }} from {{ kind }}
    {%- endfor %}
)

select * from findings
