{#
  Least-squares trend of outcome_quality on x = weeks (whole calendar weeks, Monday-based),
  from running sums, so the marts never rescan events:
    n, sx = sum(x), sxx = sum(x^2), sy = sum(y), syy = sum(y^2), sxy = sum(x*y).
  x must be whole numbers (a week index) shifted to a small origin (the entity's first week):
  the slope does not change with the origin, and n*sxx - sx^2 is then exact in hugeint.
    slope = (n*sxy - sx*sy) / (n*sxx - sx^2)            (= regr_slope(y, x))
    SSres = Syy_c - slope * Sxy_c, with Syy_c = syy - sy^2/n, Sxy_c = sxy - sx*sy/n
    se    = sqrt(SSres / (n - 2) / Sxx_c), Sxx_c = sxx - sx^2/n;   t = slope / se
  slope is null without x variance; t is null when n <= 2 or the fit is exact
  (SSres <= trend_exact_fit_tolerance() * Syy_c, below).
  A flat series (no variance in y: Syy_c <= tolerance * syy) has slope exactly 0 and a null
  t: there Syy_c, the slope and SSres are all rounding, so the t they gave changed sign and
  size with the order rows were summed in (two builds of one warehouse disagreed).
#}
{% macro trend_slope_and_t(n, sx, sxx, sy, syy, sxy) -%}
    {%- set denom = "(" ~ n ~ "::" ~ exact_integer_type() ~ " * " ~ sxx ~ " - " ~ sx ~ "::" ~ exact_integer_type() ~ " * " ~ sx ~ ")" -%}
    {%- set slope = "((" ~ n ~ " * " ~ sxy ~ " - " ~ sx ~ " * " ~ sy ~ ") / " ~ denom ~ "::double)" -%}
    {%- set syy_c = "(" ~ syy ~ " - " ~ sy ~ " * " ~ sy ~ " / " ~ n ~ ")" -%}
    {%- set ss_res = "(" ~ syy_c ~ " - " ~ slope ~ " * (" ~ sxy ~ " - " ~ sx ~ " * " ~ sy ~ " / " ~ n ~ "))" -%}
    {%- set flat = "(" ~ syy_c ~ " <= " ~ trend_exact_fit_tolerance() ~ " * " ~ syy ~ ")" -%}
    case
        when {{ denom }} > 0 and {{ flat }} then 0.0
        when {{ denom }} > 0 then {{ slope }}
    end as quality_slope_per_week,
    case
        when {{ n }} > 2
            and {{ denom }} > 0
            and not {{ flat }}
            and {{ ss_res }} > {{ trend_exact_fit_tolerance() }} * {{ syy_c }}
            then {{ slope }}
                / sqrt({{ ss_res }} / ({{ n }} - 2) / ({{ denom }}::double / {{ n }}))
    end as slope_t_stat
{%- endmacro %}

{#
  An exact fit: residuals at most this share of the variance of y are rounding, not data
  (the same line summed in another order leaves 0 or 1e-30). Then t is null, never a
  rounding-sized se turned into |t| ~ 1e7. The pandas and SQLite baselines of
  `engram bench` use the same rule, so the three agree on which fits are exact.
#}
{% macro trend_exact_fit_tolerance() -%}
    1e-9
{%- endmacro %}

{#
  Direction of a trend: 'insufficient_data' with fewer than var('trend_min_events') (at least 3)
  events or
  no spread in x (all events in one week); else by the slope's sign when |t| reaches
  var('trend_min_abs_t') (or the fit is exact: t is null, slope non-zero); else 'stable'.
#}
{% macro trend_direction(n, slope, t) -%}
    case
        when {{ n }} < greatest({{ var('trend_min_events') }}, 3) or {{ slope }} is null
            then 'insufficient_data'
        when ({{ t }} is null or abs({{ t }}) >= {{ var('trend_min_abs_t') }})
            and {{ slope }} > 0
            then 'improving'
        when ({{ t }} is null or abs({{ t }}) >= {{ var('trend_min_abs_t') }})
            and {{ slope }} < 0
            then 'declining'
        else 'stable'
    end
{%- endmacro %}
