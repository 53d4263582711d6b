{#
  Least-squares trend of outcome_quality on x = weeks (whole calendar weeks, Monday-based),
  from running sums, so the marts never rescan events:
    n, sx = sum(x), sxx = sum(x^2), sy = sum(y), syy = sum(y^2), sxy = sum(x*y).
  x must be whole numbers (a week index) shifted to a small origin (the entity's first week):
  the slope does not change with the origin, and n*sxx - sx^2 is then exact in hugeint.
    slope = (n*sxy - sx*sy) / (n*sxx - sx^2)            (= regr_slope(y, x))
    SSres = Syy_c - slope * Sxy_c, with Syy_c = syy - sy^2/n, Sxy_c = sxy - sx*sy/n
    se    = sqrt(SSres / (n - 2) / Sxx_c), Sxx_c = sxx - sx^2/n;   t = slope / se
  slope is null without x variance; t is null when n <= 2 or the fit is exact (se = 0).
#}
{% macro trend_slope_and_t(n, sx, sxx, sy, syy, sxy) -%}
    case
        when {{ n }}::hugeint * {{ sxx }} - {{ sx }}::hugeint * {{ sx }} > 0
            then ({{ n }} * {{ sxy }} - {{ sx }} * {{ sy }})
                / ({{ n }}::hugeint * {{ sxx }} - {{ sx }}::hugeint * {{ sx }})::double
    end as quality_slope_per_week,
    case
        when {{ n }} > 2
            and {{ n }}::hugeint * {{ sxx }} - {{ sx }}::hugeint * {{ sx }} > 0
            then (({{ n }} * {{ sxy }} - {{ sx }} * {{ sy }})
                / ({{ n }}::hugeint * {{ sxx }} - {{ sx }}::hugeint * {{ sx }})::double)
                / nullif(
                    sqrt(
                        greatest(
                            ({{ syy }} - {{ sy }} * {{ sy }} / {{ n }})
                            - (({{ n }} * {{ sxy }} - {{ sx }} * {{ sy }})
                                / ({{ n }}::hugeint * {{ sxx }} - {{ sx }}::hugeint * {{ sx }})::double)
                            * ({{ sxy }} - {{ sx }} * {{ sy }} / {{ n }}),
                            0
                        )
                        / ({{ n }} - 2)
                        / (({{ n }}::hugeint * {{ sxx }} - {{ sx }}::hugeint * {{ sx }})::double
                            / {{ n }})
                    ),
                    0
                )
    end as slope_t_stat
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
